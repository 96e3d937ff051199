"""The composition root: the stages of SPEC section 1 assembled once, for every caller.

The daemon, the command line and the tests all get their store, intake, builder,
archiver, operations and importer here, wired the same way:

    intake -> store (durable write) -> builder (assembly) -> archiver
                                        operations: what people ask of a session
                                        importer: uploads, through the same intake
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xnatd.archive.archiver import Archiver
from xnatd.assembler.builder import Builder
from xnatd.config import Config
from xnatd.intake.importer import Importer, ImportRequest
from xnatd.intake.intake import Intake
from xnatd.metrics import Metrics
from xnatd.operations import Operations
from xnatd.store import Store
from xnatd.store.layout import PrearchiveName


def open_store(config: Config) -> Store:
    """The store a configuration names (its data directory, index and site).

    Raises:
        store.DataDirError: the data directory cannot be created or written.
    """
    return Store.open(
        config.site.data_dir,
        config.index,
        site_id=config.site.id,
        min_free_disk=config.site.min_free_disk,
    )


@dataclass(frozen=True)
class Pipeline:
    """One node's stages over one store; ``config`` is read anew at each use (reload)."""

    config: Callable[[], Config]
    store: Store
    metrics: Metrics
    node: str
    intake: Intake
    builder: Builder
    archiver: Archiver
    operations: Operations
    importer: Importer

    @classmethod
    def assemble(
        cls, store: Store, config: Callable[[], Config], metrics: Metrics, node: str
    ) -> Pipeline:
        """Wire every stage over ``store``."""
        intake = Intake(config, store.prearchive, metrics)
        builder = Builder(store.assembly, metrics, node, phi_check=lambda: config().site.phi_check)
        archiver = Archiver(store.archiving, config, metrics, node)
        operations = Operations(store, config, metrics, node, builder=builder, archiver=archiver)

        def settle(names: Sequence[PrearchiveName], request: ImportRequest) -> list[str]:
            return operations.settle_import(
                names, archive=request.archive, overwrite=request.overwrite, actor=request.actor
            )

        importer = Importer(store, intake, settle, config, node)
        return cls(config, store, metrics, node, intake, builder, archiver, operations, importer)
