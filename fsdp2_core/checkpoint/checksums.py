"""A checksum of every file of a checkpoint, recorded at save and verified at resume.

    <save>/iter_0000100/checksums.json
        {"algorithm": "crc32", "files": {"__0_0.distcp": {"size": .., "crc32": ..}, ..}}

A byte flipped on disk (a bad sector, a torn copy) leaves a checkpoint complete in size but
wrong in value; DCP loads it without complaint. CRC-32 (zlib, streamed in 8 MiB chunks, the
fastest checksum of the standard library) catches every burst of up to 32 flipped bits and all
but 1 in 2**32 of other damage; it guards against accidents, not against an attacker.

Who hashes: at a synchronous save every rank hashes the DCP files it wrote (`__<rank>_*.distcp`,
still in its page cache) and rank 0 the rest, before the directory is published; an asynchronous
save is hashed by rank 0 when it publishes it. At resume every rank verifies a share of the files
(round robin) and all learn every mismatch, so verification reads the checkpoint once, spread
over the ranks. A checkpoint written before checksums existed has no checksums.json and loads
unverified.
"""
import json
import os
import zlib
from typing import Dict, List, Optional, Sequence

import torch.distributed as dist

CHECKSUMS = "checksums.json"
ALGORITHM = "crc32"
_CHUNK = 8 << 20


def file_checksum(path: str) -> str:
    """CRC-32 of a file as 8 hex digits, read in chunks (zlib releases the GIL while it sums)."""
    crc = 0
    with open(path, "rb", buffering=0) as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                return f"{crc:08x}"
            crc = zlib.crc32(chunk, crc)


def list_files(directory: str) -> List[str]:
    """Every file under `directory` (relative paths, sorted), except the checksum record itself."""
    out = []
    for root, _, names in os.walk(directory):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), directory)
            if rel != CHECKSUMS:
                out.append(rel)
    return sorted(out)


def own_files(directory: str, rank: int) -> List[str]:
    """The DCP data files rank `rank` wrote (FileSystemWriter names them __<rank>_<n>.distcp)."""
    prefix = f"__{rank}_"
    return sorted(n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".distcp"))


def checksum_files(directory: str, names: Sequence[str]) -> Dict[str, dict]:
    return {rel: {"size": os.path.getsize(os.path.join(directory, rel)),
                  ALGORITHM: file_checksum(os.path.join(directory, rel))} for rel in names}


def record(directory: str, known: Optional[Dict[str, dict]] = None) -> int:
    """Rank 0, before publishing: hash what the ranks did not, write checksums.json; returns bytes summed."""
    sums = dict(known or {})
    sums.update(checksum_files(directory, [rel for rel in list_files(directory) if rel not in sums]))
    path = os.path.join(directory, CHECKSUMS)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump({"algorithm": ALGORITHM, "files": sums}, fh, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)
    return sum(entry["size"] for entry in sums.values())


def read_record(directory: str) -> Optional[Dict[str, dict]]:
    """{relative path: {size, crc32}}, or None for a checkpoint saved without checksums.

    An unreadable record is reported as a mismatch of the record itself by `mismatches`."""
    path = os.path.join(directory, CHECKSUMS)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("algorithm") != ALGORITHM or not isinstance(doc.get("files"), dict):
        raise ValueError(f"not a {ALGORITHM} checksum record")
    return doc["files"]


def _check(directory: str, rel: str, expected: dict) -> Optional[str]:
    path = os.path.join(directory, rel)
    if not os.path.isfile(path):
        return f"{path} is missing"
    size = os.path.getsize(path)
    if size != expected.get("size"):
        return f"{path} has {size} bytes, {expected.get('size')} when it was saved"
    actual = file_checksum(path)
    if actual != expected.get(ALGORITHM):
        return f"{path} does not match its checksum ({ALGORITHM} {actual}, {expected.get(ALGORITHM)} when it was saved)"
    return None


def mismatches(directory: str, rank: int = 0, world: int = 1) -> List[str]:
    """This rank's share (every world-th file) of the files that differ from the record; [] when none."""
    try:
        recorded = read_record(directory)
    except (OSError, ValueError) as exc:
        return [f"{os.path.join(directory, CHECKSUMS)} is unreadable ({exc})"] if rank == 0 else []
    if recorded is None:
        return []
    problems = []
    for i, rel in enumerate(sorted(recorded)):
        if i % world == rank:
            try:
                problem = _check(directory, rel, recorded[rel])
            except OSError as exc:
                problem = f"{os.path.join(directory, rel)} cannot be read ({exc.strerror})"
            if problem:
                problems.append(problem)
    return problems


def verify(directory: str, rank: int, world: int, group=None) -> List[str]:
    """Collective: every rank checks its share; every rank returns all mismatches, sorted."""
    mine = mismatches(directory, rank, world)
    if not dist.is_initialized() or world == 1:
        return mine
    gathered: List[List[str]] = [[] for _ in range(world)]
    dist.all_gather_object(gathered, mine, group=group)
    return sorted(p for part in gathered for p in part)


def has_record(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, CHECKSUMS))
