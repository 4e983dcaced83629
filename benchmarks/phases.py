"""The bridge's own account of where its batches spend their time (`flow45_batch_phase_seconds`),
read from its metrics port before and after a phase of the benchmark: the mean per batch of each
phase, beside the machine's bare commit."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

PHASES = ("wait", "apply", "commit", "answer")


def read(port: int) -> dict[tuple[str, str], float]:
    """(sample name, phase or "") -> value, of the phase and batch size histograms."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("flow45_batch_phase_seconds", "flow45_batch_size"):
            for sample in family.samples:
                if sample.name.endswith(("_sum", "_count")):
                    found[(sample.name, sample.labels.get("phase", ""))] = sample.value
    return found


def describe(before: dict, after: dict, commit_ms: float) -> str:
    """One line: the phases' means per batch between two reads."""
    def spent(name: str, phase: str = "") -> float:
        return after.get((name, phase), 0.0) - before.get((name, phase), 0.0)

    batches = spent("flow45_batch_size_count")
    if not batches:
        return "in the bridge: no batch"
    counts = {phase: max(spent("flow45_batch_phase_seconds_count", phase), 1) for phase in PHASES}
    means = {phase: spent("flow45_batch_phase_seconds_sum", phase) / counts[phase] for phase in PHASES}
    return (f"in the bridge, per batch ({batches:,.0f} batches of {spent('flow45_batch_size_sum') / batches:.1f} "
            f"messages on average), mean ms: " + ", ".join(f"{p} {means[p] * 1000:.2f}" for p in PHASES)
            + f" (a bare commit: {commit_ms:.2f})")
