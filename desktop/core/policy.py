"""The lab's policy: what changes the meaning of a record is the lab's to set, in a system-wide file a
normal user cannot change (`/etc/slidetally/lab.toml`; on Windows `%PROGRAMDATA%\\SlideTally\\lab.toml`),
not a per-user setting anyone can tick. Per-user settings keep the layout only.

    [verification]
    allow_signer_login = false     # may a second person verify under the signer's computer login?
    [report]
    reference_intervals = "/etc/slidetally/reference_intervals.json"
    default_target_wbc = 100       # white cells a blood differential counts unless the session says otherwise
    [lis]
    folder = "/srv/lis/inbox"      # after each sign-off the HL7 and FHIR files are written here
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_TARGET_WBC = 100  # white cells a blood differential counts unless the lab or the session says otherwise


log = logging.getLogger(__name__)
TARGET_RANGE = (10, 10_000)


def policy_path() -> Path:
    """Where the lab's policy lives on this system."""
    if os.name == "nt":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "SlideTally" / "lab.toml"
    return Path("/etc/slidetally/lab.toml")


@dataclass(frozen=True)
class LabPolicy:
    allow_signer_login: bool = False
    reference_intervals: Path | None = None
    default_target_wbc: int = DEFAULT_TARGET_WBC
    lis_folder: Path | None = None
    source: str = ""  # where it came from, in words: About and the log say it

    @property
    def lis_is_the_labs(self) -> bool:
        return self.lis_folder is not None


def _read(path: Path) -> LabPolicy:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    verification, report, lis = (data.get(k, {}) for k in ("verification", "report", "lis"))
    allow = verification.get("allow_signer_login", False)
    target = report.get("default_target_wbc", DEFAULT_TARGET_WBC)
    intervals, folder = report.get("reference_intervals"), lis.get("folder")
    if not isinstance(allow, bool):
        raise ValueError("verification.allow_signer_login must be true or false")
    if not (isinstance(target, int) and TARGET_RANGE[0] <= target <= TARGET_RANGE[1]):
        raise ValueError(f"report.default_target_wbc must be a whole number from {TARGET_RANGE[0]} to {TARGET_RANGE[1]}")
    for key, value in (("report.reference_intervals", intervals), ("lis.folder", folder)):
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise ValueError(f"{key} must be a path")
    return LabPolicy(allow, Path(intervals) if intervals else None, target, Path(folder) if folder else None,
                     f"the lab policy file {path}")


@lru_cache(maxsize=4)
def lab_policy(path: Path | None = None) -> LabPolicy:
    """The policy in force: the lab's file, else the built-in defaults. A file that cannot be read or is
    wrong gives the defaults (the safe ones: no verification under the signer's login) and says so."""
    path = path or policy_path()
    if not path.is_file():
        policy = LabPolicy(source=f"built-in defaults (no lab policy file at {path})")
    else:
        try:
            policy = _read(path)
        except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
            policy = LabPolicy(source=f"built-in defaults: the lab policy file {path} could not be used ({exc})")
    log.info("lab policy: %s", policy.source)
    return policy
