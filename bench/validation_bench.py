"""Benchmark FHIR R4 validation: ours (pms.fhir.validation) vs fhir.resources (R4B models) vs fhirkit (Rust).

Usage: .venv/bin/python bench/validation_bench.py [--all] [--only ours,fhir.resources,fhirkit]
                                                   [--budget 0.05] [--min-runs 3]

Input: the official R4 package (../shared/fhir/hl7.fhir.r4.examples-4.0.1.tgz). "Examples" are all its
resources except the definitional StructureDefinition/ValueSet/CodeSystem/SearchParameter files; --all
includes those too. Each resource is validated once untimed (the verdict, and warm-up: lazy schema/model
builds are not counted), then timed best-of-N, N chosen so each resource gets about --budget seconds
(--min-runs <= N <= 50): best-of filters out the noise of a shared machine. Reported: accepted/rejected,
mean, median and p95 of the per-resource times, Patient-example.json and the mean over Patient examples.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing the package

PACKAGE = ROOT.parent / "shared" / "fhir" / "hl7.fhir.r4.examples-4.0.1.tgz"
DEFINITIONS = ("StructureDefinition-", "ValueSet-", "CodeSystem-", "SearchParameter-")

# A validator returns None when it accepts, else the first line of its reason.
Validator = Callable[[dict[str, Any]], str | None]


def load(include_definitions: bool) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    with tarfile.open(PACKAGE) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not name.endswith(".json") or name in ("package.json", "ig-r4.json"):
                continue
            if not include_definitions and name.startswith(DEFINITIONS):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            doc = json.load(handle)
            if isinstance(doc, dict) and "resourceType" in doc:
                docs[name] = doc
    return docs


def ours() -> Validator:
    from pms.fhir.validation import validate_resource
    from pms.fhir.validation.schema import load_schema

    started = time.perf_counter()
    load_schema()
    print(f"  (ours: schema loaded in {(time.perf_counter() - started) * 1e3:.0f} ms, once per process)")

    def run(doc: dict[str, Any]) -> str | None:
        issues = validate_resource(doc)
        if not issues:
            return None
        first = issues[0]
        return f"{len(issues)} issue(s); {first.code} at {','.join(first.expression)}: {first.diagnostics}"

    return run


def fhir_resources() -> Validator:
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    def run(doc: dict[str, Any]) -> str | None:
        try:
            get_fhir_model_class(doc["resourceType"]).model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return f"{exc.error_count()} error(s); {where}: {first['msg']}"
        except (ValueError, KeyError) as exc:
            return str(exc).splitlines()[0]
        return None

    return run


def fhirkit_validator() -> Validator:
    import fhirkit

    def run(doc: dict[str, Any]) -> str | None:
        errors = [i for i in fhirkit.validate(doc) if i.severity == "error"]
        if not errors:
            return None
        return f"{len(errors)} error(s); {errors[0].path}: {errors[0].message}"

    return run


VALIDATORS: dict[str, Callable[[], Validator]] = {
    "ours": ours,
    "fhir.resources": fhir_resources,
    "fhirkit": fhirkit_validator,
}


def timed(validate: Validator, doc: dict[str, Any], budget: float, min_runs: int) -> tuple[float, str | None]:
    """(best time in seconds, verdict) for one resource."""
    verdict = validate(doc)  # untimed: verdict and warm-up
    started = time.perf_counter()
    validate(doc)
    best = time.perf_counter() - started
    spent = best
    runs = 1
    while (spent < budget or runs < min_runs) and runs < 50:
        started = time.perf_counter()
        validate(doc)
        elapsed = time.perf_counter() - started
        best = min(best, elapsed)
        spent += elapsed
        runs += 1
    return best, verdict


def bench(
    name: str, validate: Validator, docs: dict[str, dict[str, Any]], budget: float, min_runs: int
) -> dict[str, Any]:
    times: dict[str, float] = {}
    rejected: dict[str, str] = {}
    for file, doc in docs.items():
        seconds, verdict = timed(validate, doc, budget, min_runs)
        times[file] = seconds * 1e6
        if verdict is not None:
            rejected[file] = verdict.splitlines()[0]
    values = sorted(times.values())
    patients = [t for file, t in times.items() if file.startswith("Patient-")]
    return {
        "name": name,
        "count": len(docs),
        "accepted": len(docs) - len(rejected),
        "rejected": rejected,
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "p95": values[min(len(values) - 1, int(len(values) * 0.95))],
        "patient_example": times.get("Patient-example.json", float("nan")),
        "patients": statistics.fmean(patients) if patients else float("nan"),
        "total_s": sum(values) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="include the package's definitional resources")
    parser.add_argument("--only", default=",".join(VALIDATORS), help="comma-separated validators to run")
    parser.add_argument("--budget", type=float, default=0.05, help="seconds of timed runs per resource")
    parser.add_argument("--min-runs", type=int, default=3, help="timed runs per resource at least")
    args = parser.parse_args()
    if not PACKAGE.exists():
        sys.exit(f"official R4 package not found at {PACKAGE}")
    docs = load(args.all)
    print(f"{len(docs)} resources from {PACKAGE.name}{' (all files)' if args.all else ' (examples)'}")
    results = []
    for name in args.only.split(","):
        print(f"running {name} ...", flush=True)
        results.append(bench(name, VALIDATORS[name](), docs, args.budget, args.min_runs))

    print()
    header = (
        f"{'validator':<16}{'count':>7}{'accepted':>10}{'rejected':>10}{'mean µs':>11}{'median µs':>11}"
        f"{'p95 µs':>10}{'Patient-example µs':>20}{'µs/Patient':>12}{'sum s':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['name']:<16}{r['count']:>7}{r['accepted']:>10}{len(r['rejected']):>10}{r['mean']:>11.1f}"
            f"{r['median']:>11.1f}{r['p95']:>10.1f}{r['patient_example']:>20.1f}{r['patients']:>12.1f}"
            f"{r['total_s']:>8.2f}"
        )
    for r in results:
        print(f"\n{r['name']} rejects {len(r['rejected'])}:")
        for file, reason in sorted(r["rejected"].items()):
            print(f"  {file}: {reason[:200]}")


if __name__ == "__main__":
    main()
