"""Catalog digests: a file received on an association is hashed from the bytes it
arrived as, once its answer is out, and recorded with the association's next file or
at its close; any other file's MD5 is taken from the file when its session is built.
Each is recorded once, only on the row its file made, and named when it cannot be."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from dicomgen import SeriesSpec, StudySpec, write_study
from lxml import etree

from xnatd import payload
from xnatd.config import Receiver
from xnatd.intake.intake import Outcome, Received, SessionCache
from xnatd.intake.open_associations import Associations, AssociationState
from xnatd.store import digests
from xnatd.store.digests import AfterReplyDigests
from xnatd.store.durable import write_durably
from xnatd.store.index.records import PENDING_DIGEST, Status
from xnatd.store.layout import session_file

CAT = {"cat": "http://nrg.wustl.edu/catalog"}


def one_series(seed: str, instances: int) -> StudySpec:
    """A study routed to DEMO (kept in the prearchive) with one series."""
    return StudySpec(
        seed,
        patient_comments="Project: DEMO Subject: SUBJ01 Session: MR1",
        series=[SeriesSpec(1, instances=instances)],
    )


def received_session(make_site, folder: Path, instances: int = 5):
    site = make_site({"DEMO": {"prearchive": "manual"}})
    study = one_series("digests", instances)
    assert site.receive(write_study(study, folder)) == ["stored"] * instances
    [session] = site.prearchive()
    return site, session


def md5_of_stored(site, session) -> dict[str, str]:
    folder = site.store.prearchive.session_dir(session.name)
    return {
        record.sop_instance_uid: hashlib.md5(
            (folder / session_file(record.scan, record.file_name)).read_bytes()
        ).hexdigest()
        for record in site.store.index.instances(session.id)
    }


def on_association(site, cache: SessionCache, path: Path | payload.SpooledFile) -> Outcome:
    """One file as a C-STORE delivers it: the intake with the association's cache."""
    data = path if isinstance(path, payload.SpooledFile) else path.read_bytes()
    outcome = site.intake.receive(Received(data, source="TEST", calling_ae="SENDER"), cache)
    assert outcome.result.value == "stored", outcome
    return outcome


def recorded(site, session) -> dict[str, str]:
    return {r.sop_instance_uid: r.md5 for r in site.store.index.instances(session.id)}


@pytest.mark.parametrize(
    ("batch_files", "batch_bytes", "hashed_while_open"),
    [(2, 1 << 30, 4), (100, 1, 4), (100, 1 << 30, 0)],
    ids=["two-files-a-batch", "every-file-fills-the-bytes", "batch-never-full"],
)
def test_an_association_s_digests_ride_on_its_next_file_and_the_last_on_its_close(
    make_site, dcm_dir: Path, monkeypatch, batch_files, batch_bytes, hashed_while_open
) -> None:
    """A batch is hashed once it holds ``BATCH_FILES`` files or ``BATCH_BYTES`` bytes;
    its digests reach the index with the association's next file, and whatever is
    still waiting when the association closes is hashed and recorded then."""
    monkeypatch.setattr(digests, "BATCH_FILES", batch_files)
    monkeypatch.setattr(digests, "BATCH_BYTES", batch_bytes)
    site = make_site({"DEMO": {"prearchive": "manual"}})
    study = one_series("after-reply", 5)
    cache = SessionCache(digests=AfterReplyDigests())
    for path in write_study(study, dcm_dir):
        outcome = on_association(site, cache, path)
        assert outcome.afterwards is not None
        outcome.afterwards()  # the receiver, once the answer is sent
    [session] = site.prearchive()
    expected = md5_of_stored(site, session)
    in_order = [record.sop_instance_uid for record in site.store.index.instances(session.id)]
    assert recorded(site, session) == {
        uid: expected[uid] if position < hashed_while_open else PENDING_DIGEST
        for position, uid in enumerate(in_order)
    }

    site.store.prearchive.association_closed("assoc-1", cache.digests)

    assert recorded(site, session) == expected


def test_the_receiver_s_association_close_records_its_last_digest(make_site, dcm_dir: Path) -> None:
    """The wiring the daemon uses: the association's state carries its digests, and
    forgetting the association records those still waiting."""
    site = make_site({"DEMO": {"prearchive": "manual"}})
    study = one_series("closing", 1)
    associations = Associations(site.store.prearchive, site.metrics, "test-node")
    peer = object()  # what pynetdicom's Association is to the receiver: a key
    associations.add(peer, AssociationState("assoc-1", Receiver("XNAT", 104, "::"), "SENDER", ""))
    state = associations.get(peer)
    assert state is not None
    [path] = write_study(study, dcm_dir)
    afterwards = on_association(site, state.cache, path).afterwards
    assert afterwards is not None
    afterwards()
    [session] = site.prearchive()
    assert set(recorded(site, session).values()) == {PENDING_DIGEST}

    associations.remove(peer)

    assert recorded(site, session) == md5_of_stored(site, session)


def test_a_digest_is_dropped_when_its_file_was_replaced_or_rewritten_meanwhile(
    make_site, dcm_dir: Path
) -> None:
    """A copy of the same instance written over the file before its hash was taken
    (another association's), or a rewrite of the file before the digest reached the
    index (pixels cleaned while the association stays open): the row ends with the
    MD5 of what is on disk, never that of the bytes this association sent."""
    site = make_site({"DEMO": {"prearchive": "manual"}})
    study = one_series("replaced", 2)
    first, second = write_study(study, dcm_dir)
    cache = SessionCache(digests=AfterReplyDigests())
    replaced = on_association(site, cache, first)
    [session] = site.prearchive()
    [record] = site.store.index.instances(session.id)
    stored = site.store.prearchive.instance_file(session, record)
    write_durably(stored, stored.read_bytes() + b"\0\0", site.store.data.prearchive)
    assert replaced.afterwards is not None
    replaced.afterwards()
    rewritten = on_association(site, cache, second)
    assert rewritten.afterwards is not None
    rewritten.afterwards()
    record = site.store.index.instances(session.id)[1]
    cleaned = site.store.prearchive.instance_file(session, record).read_bytes()[:-2] + b"  "
    site.store.edits.replace_file(session, record, cleaned)

    site.store.prearchive.association_closed("assoc-1", cache.digests)

    assert recorded(site, session) == {
        site.store.index.instances(session.id)[0].sop_instance_uid: PENDING_DIGEST,
        record.sop_instance_uid: hashlib.md5(cleaned).hexdigest(),
    }
    site.build_all()
    assert recorded(site, session) == md5_of_stored(site, session)


def test_md5_many_gives_hashlib_s_digests_for_every_length_and_batch() -> None:
    """Lengths around the 56-byte and 64-byte block edges, batches of one to past the
    16 lanes, equal and very unequal lengths (some batches take hashlib's way)."""
    generator = random.Random(23)
    edges = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 262_147]
    batches = [edges, [b"x" * 70_000], [bytes(3)] * 40, edges * 3]
    batches += [
        [generator.randbytes(generator.randrange(0, 300_000)) for _ in range(count)]
        for count in (2, 5, 16, 17, 33)
    ]
    for batch in batches:
        buffers = [generator.randbytes(n) if isinstance(n, int) else n for n in batch]
        assert digests.md5_many(buffers) == [hashlib.md5(b).hexdigest() for b in buffers]
    assert digests.md5_many([]) == []


def test_the_vector_lanes_are_built_and_take_any_contiguous_buffer() -> None:
    """The C part builds on a machine with a compiler (it is optional only for the
    install: without it every digest is hashlib's, at a fifth of the rate)."""
    lanes = digests._lane_digests
    assert lanes is not None, "xnatd/store/_md5lanes.c was not built: pip install -e ."
    buffers = [bytearray(b"a" * 100), memoryview(b"b" * 5000), b"c" * 64]
    assert lanes(buffers) == [hashlib.md5(b).digest() for b in buffers]
    with pytest.raises(TypeError):
        lanes([b"fine", "not bytes"])
    with pytest.raises(TypeError):
        lanes(5)


def test_a_spooled_file_is_hashed_at_the_build_not_read_back_on_the_association(
    make_site, dcm_dir: Path
) -> None:
    site = make_site({"DEMO": {"prearchive": "manual"}})
    study = one_series("spooled", 1)
    [path] = write_study(study, dcm_dir)
    cache = SessionCache(digests=AfterReplyDigests())
    assert on_association(site, cache, payload.SpooledFile(b"", path)).afterwards is None
    [session] = site.prearchive()
    site.build_all()
    assert recorded(site, session) == md5_of_stored(site, session)


def test_digests_wait_for_the_build_then_match_the_files(make_site, dcm_dir: Path) -> None:
    site, session = received_session(make_site, dcm_dir)
    assert {r.md5 for r in site.store.index.instances(session.id)} == {PENDING_DIGEST}

    site.build_all()

    expected = md5_of_stored(site, session)
    recorded = {r.sop_instance_uid: r.md5 for r in site.store.index.instances(session.id)}
    assert recorded == expected
    folder = site.store.prearchive.session_dir(session.name)
    [catalog] = folder.glob("SCANS/*/DICOM/*_catalog.xml")
    entries = etree.parse(catalog).iterfind(".//cat:entry", CAT)
    assert {entry.get("UID"): entry.get("digest") for entry in entries} == expected


def test_archived_catalog_carries_the_digests(make_site, dcm_dir: Path) -> None:
    site, session = received_session(make_site, dcm_dir)
    expected = set(md5_of_stored(site, session).values())
    site.build_all()
    site.operations.archive(session.name, "none", "test")
    [archived] = site.archived()
    catalogs = list((site.store.data.root / archived.path).glob("SCANS/*/DICOM/*_catalog.xml"))
    digests = {
        entry.get("digest")
        for catalog in catalogs
        for entry in etree.parse(catalog).iterfind(".//cat:entry", CAT)
    }
    assert digests == expected


def test_a_recorded_file_gone_before_the_build_is_named(make_site, dcm_dir: Path) -> None:
    site, session = received_session(make_site, dcm_dir)
    record = site.store.index.instances(session.id)[2]
    gone = site.store.prearchive.session_dir(session.name) / session_file(
        record.scan, record.file_name
    )
    gone.unlink()

    site.build_all()

    [after] = site.prearchive()
    assert after.status is Status.ERROR
    assert gone.name in (after.reason or "")


@pytest.mark.parametrize("parallel_from", [0, 1 << 40])
@pytest.mark.parametrize(("batch_files", "batch_bytes"), [(16, 8 << 20), (3, 30_000)])
def test_files_md5_in_threads_or_not_gives_each_file_its_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel_from, batch_files, batch_bytes
) -> None:
    """Files read a batch at a time (the batch full by count or by bytes), a file past
    the batch's bytes read in chunks, in threads or not: each gets its own MD5."""
    monkeypatch.setattr(digests, "PARALLEL_FROM", parallel_from)
    monkeypatch.setattr(digests, "THREADS", 3)
    monkeypatch.setattr(digests, "BATCH_FILES", batch_files)
    monkeypatch.setattr(digests, "BATCH_BYTES", batch_bytes)
    monkeypatch.setattr(payload, "IN_MEMORY_LIMIT", 1000)  # the larger ones read in chunks
    generator = random.Random(5)
    sizes = [0, 10, 999, 1001, 5000, 70_000, 3, 40_000]
    sizes += [generator.randrange(0, 20_000) for _ in range(37)]
    paths = []
    for number, size in enumerate(sizes):
        path = tmp_path / f"{number}.dcm"
        path.write_bytes(generator.randbytes(size))
        paths.append(path)
    expected = [hashlib.md5(path.read_bytes()).hexdigest() for path in paths]
    assert digests.files_md5(paths, sizes) == expected
