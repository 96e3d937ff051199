"""An anonymization chain (SPEC 10.1): DicomEdit scripts and built-in profiles applied in
the order the configuration lists them, each seeing the previous one's output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from xnatd.anon.engine import run
from xnatd.anon.profile import Profile
from xnatd.anon.script import Script


@dataclass(frozen=True)
class Chain:
    """The steps, in order; called like a script by ``xnatd.anon.apply``."""

    steps: tuple[Script | Profile, ...]

    @property
    def functions(self) -> frozenset[str]:
        """The DicomEdit functions any script of the chain calls."""
        names: set[str] = set()
        for step in self.steps:
            if isinstance(step, Script):
                names.update(step.functions)
        return frozenset(names)

    @property
    def retains_institution(self) -> bool:
        """Whether a profile keeps institution and staff names (the PHI check skips them)."""
        return any(
            isinstance(step, Profile) and "retain-institution-identity" in step.options
            for step in self.steps
        )

    def run(self, dataset: Dataset, variables: Mapping[str, Any]) -> bool:
        """Apply every step to ``dataset`` in place; True when a script rejected it."""
        for step in self.steps:
            if isinstance(step, Profile):
                step.apply(dataset)
            elif run(step, dataset, variables).rejected:
                return True
        return False


def retains_institution(anonymizer: Script | Chain) -> bool:
    """Whether the site check should leave institution and staff names out."""
    return isinstance(anonymizer, Chain) and anonymizer.retains_institution
