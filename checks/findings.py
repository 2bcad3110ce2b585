"""What `sealdrop check` reports: a finding is fine, or a problem with its fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One result: fine, or a problem together with what to do about it."""

    ok: bool
    text: str
    fix: str = ""
    warning: bool = False  # worth acting on, but the service is safe to run (`ok` stays)

    def line(self) -> str:
        if self.warning:
            return f"WARNING {self.text}: fix: {self.fix}"
        if self.ok:
            return f"OK {self.text}"
        return f"PROBLEM {self.text}: fix: {self.fix}"


def ok(text: str) -> Finding:
    return Finding(True, text)


def problem(text: str, fix: str) -> Finding:
    return Finding(False, text, fix)


def warning(text: str, fix: str) -> Finding:
    return Finding(True, text, fix, warning=True)


def problem_from_message(message: str, default_fix: str) -> Finding:
    """A finding from another module's error message, which names the problem and,
    after its first ``; `` or ``. ``, the fix (the house style for operator messages)."""
    for separator in ("; ", ". "):
        head, found, tail = message.partition(separator)
        if found and tail.strip():
            return problem(head, tail.strip().rstrip("."))
    return problem(message.rstrip("."), default_fix)
