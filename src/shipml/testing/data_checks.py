"""Data checks: schema, ranges, nulls, duplicates, label balance, leakage, skew, meta-level.

Each takes the model under test (its training dataset snapshot, held-out rows and
training-row hashes) and returns a ``CheckResult`` whose message states the
measurement and the bound from ``[tests.data]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shipml.model import model_input
from shipml.model.package import row_hashes
from shipml.testing.check import Check, CheckResult, Env, NotApplicable, always, fmt
from shipml.testing.subject import Subject


def _features(subject: Subject) -> list[str]:
    return [n for n in subject.signature.names if n in subject.dataset.columns]


def schema(subject: Subject, env: Env) -> CheckResult:
    """The dataset matches the model's signature: types, allowed categories, nullability
    (validated with pandera, every row)."""
    import pandera.pandas as pa

    df = subject.dataset
    # Features the pipeline makes (not in the dataset) are the model's, not the data's.
    made = [n for n in subject.signature.names if n not in df.columns]
    columns: dict[str, Any] = {}
    for f in subject.signature.features:
        if f.name not in df.columns:
            continue
        if f.type == "string":
            checks = [pa.Check.isin(f.categories)] if f.categories else []
            columns[f.name] = pa.Column(str, checks=checks, nullable=f.nullable, coerce=False)
        else:
            columns[f.name] = pa.Column(float, nullable=f.nullable, coerce=True)
    frame = df[list(columns)].copy()
    for f in subject.signature.features:  # strings: missing as None, not NaN floats
        if f.type == "string" and f.name in frame:
            frame[f.name] = frame[f.name].astype(object).where(frame[f.name].notna(), None)
    problems: list[dict[str, Any]] = []
    try:
        pa.DataFrameSchema(columns, strict=False).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        for (column, check), group in cases.groupby(["column", "check"], dropna=False):
            examples = sorted({str(v) for v in group["failure_case"].head(20)})[:5]
            problems.append(
                {"column": column, "check": str(check), "rows": len(group), "examples": examples}
            )
    if not columns:
        raise NotApplicable("no feature of the model is a column of the dataset")
    if problems:
        first = problems[0]
        return CheckResult(
            False,
            f"{len(problems)} schema violation(s); first: column {first['column']!r} fails "
            f"{first['check']} in {first['rows']} row(s), e.g. {first.get('examples', [])}",
            {"schema_violations": float(len(problems))},
            problems,
        )
    also = f"; {len(made)} made by the pipeline not checked: {made}" if made else ""
    return CheckResult(
        True,
        f"{len(df)} rows match the signature ({len(columns)} features: types, categories, "
        f"nullability){also}",
        {"schema_violations": 0.0},
    )


def ranges(subject: Subject, env: Env) -> CheckResult:
    """Numeric columns stay within ``[tests.data] ranges`` (missing values aside)."""
    df = subject.dataset
    bounds = subject.config.tests.data.ranges
    rows: list[dict[str, Any]] = []
    bad = 0
    for column, (low, high) in bounds.items():
        if column not in df.columns:
            rows.append({"column": column, "problem": "not in the dataset"})
            bad += 1
            continue
        given = df[column].dropna()
        values = pd.to_numeric(given, errors="coerce")
        if given.empty or values.isna().any():
            # A range on a text column, or on one with no values, can check nothing.
            text = int(values.isna().sum())
            problem = f"{text} non-numeric value(s)" if text else "no values to check"
            rows.append({"column": column, "problem": problem})
            bad += 1
            continue
        outside = values[(values < low) | (values > high)]
        rows.append(
            {
                "column": column,
                "min": float(values.min()),
                "max": float(values.max()),
                "allowed": [low, high],
                "outside": len(outside),
            }
        )
        bad += int(len(outside) > 0)
    failed = [r for r in rows if r.get("outside") or r.get("problem")]
    if failed:
        r = failed[0]
        seen = f"{fmt(r['min'])}..{fmt(r['max'])}" if "min" in r else ""
        what = r.get("problem") or f"{r['outside']} value(s) outside {r['allowed']} (seen {seen})"
        return CheckResult(
            False, f"column {r['column']!r}: {what}", {"range_violations": float(bad)}, rows
        )
    return CheckResult(
        True, f"{len(bounds)} column(s) within their ranges", {"range_violations": 0.0}, rows
    )


def nulls(subject: Subject, env: Env) -> CheckResult:
    """No feature has more missing values than ``max_null_fraction``."""
    df = subject.dataset
    limit = subject.config.tests.data.max_null_fraction
    fractions = {c: float(df[c].isna().mean()) for c in _features(subject)}
    if not fractions:
        raise NotApplicable("no feature of the model is a column of the dataset")
    worst = max(fractions, key=lambda c: fractions[c]) if fractions else ""
    value = fractions.get(worst, 0.0)
    rows = [{"column": c, "null_fraction": round(v, 4)} for c, v in fractions.items()]
    return CheckResult(
        value <= limit,
        f"most missing: {worst!r} {value:.1%} (limit {limit:.1%})",
        {"max_null_fraction": value},
        rows,
    )


def duplicates(subject: Subject, env: Env) -> CheckResult:
    """Duplicate rows stay at or under ``max_duplicate_fraction``."""
    df = subject.dataset
    limit = subject.config.tests.data.max_duplicate_fraction
    count = int(df.duplicated().sum())
    fraction = count / max(len(df), 1)
    return CheckResult(
        fraction <= limit,
        f"{count} duplicate row(s) of {len(df)} ({fraction:.2%}; limit {limit:.2%})",
        {"duplicate_fraction": fraction},
    )


def label_balance(subject: Subject, env: Env) -> CheckResult:
    """Every class makes up at least ``min_class_fraction`` of the labelled rows."""
    if subject.task != "classification":
        raise NotApplicable("label balance applies to classifiers")
    stored = subject.package.train_rows()
    if stored is not None and "label" in stored.columns:
        labels, where = stored["label"], "training rows"  # the labels the model learned
    else:
        labels, where = subject.dataset[subject.target].dropna(), "labelled rows"
    shares = labels.value_counts(normalize=True)
    limit = subject.config.tests.data.min_class_fraction
    rarest = str(shares.idxmin())
    rows = [{"class": str(k), "fraction": round(float(v), 4)} for k, v in shares.items()]
    return CheckResult(
        float(shares.min()) >= limit,
        f"rarest class {rarest!r} is {shares.min():.1%} of {len(labels)} {where} "
        f"(minimum {limit:.1%})",
        {"min_class_fraction": float(shares.min())},
        rows,
    )


def leakage(subject: Subject, env: Env) -> CheckResult:
    """No held-out row is also a training row (compared by a hash of every feature)."""
    hashes = subject.package.train_row_hashes()
    X = subject.holdout_features
    if hashes is None:
        return CheckResult(
            False,
            "the package does not record its training rows, so leakage cannot be checked; "
            "pass them: package_model(model, X_valid, y_valid, train=X_train)",
            {"leaked_rows": float("nan")},
        )
    shared = np.isin(row_hashes(X), hashes)
    count = int(shared.sum())
    examples = X[shared].head(3).to_dict(orient="records")
    return CheckResult(
        count == 0,
        f"{count} of {len(X)} held-out rows also appear in the training rows",
        {"leaked_rows": float(count)},
        [{"row": str(e)} for e in examples],
    )


def skew(subject: Subject, env: Env) -> CheckResult:
    """The same rows through the training features (``model_input``) and through the
    serving path (the server's validator: JSON records in, model tensors out) give the
    same values, column by column."""
    from shipml.serving.protocol import parse_predict
    from shipml.serving.validation import Validator

    sig = subject.signature
    present = [n for n in sig.names if n in subject.dataset.columns]
    if len(present) < len(sig.names):
        raise NotApplicable(
            f"the features {[n for n in sig.names if n not in present]} are made by the "
            "pipeline: compare its feature code with serving in a project test"
        )
    raw = subject.dataset[sig.names].head(500)
    training = model_input(raw)
    records = _records(raw)
    served_rows = parse_predict({"instances": records}, Validator(sig))
    rows: list[dict[str, Any]] = []
    for i, f in enumerate(sig.features):
        served = np.asarray(served_rows.column(f.name, i)).reshape(-1)
        trained = training[f.name].to_numpy()
        if f.type == "string":
            differ = int(sum(str(a) != str(b) for a, b in zip(served, trained, strict=True)))
        else:
            a = served.astype(np.float32)
            b = trained.astype(np.float32)
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            differ = int((~same).sum())
        if differ:
            rows.append({"feature": f.name, "rows_differing": differ})
    return CheckResult(
        not rows,
        f"{len(rows)} feature(s) differ between training and serving on {len(raw)} rows"
        + (f" (first: {rows[0]['feature']!r}, {rows[0]['rows_differing']} rows)" if rows else ""),
        {"skewed_features": float(len(rows))},
        rows,
    )


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: JSON values, null for missing."""
    out = frame.astype(object).where(frame.notna(), None)
    return [
        {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in out.to_dict(orient="records")
    ]


def meta(subject: Subject, env: Env) -> CheckResult:
    """Meta-level requirements: no forbidden feature (e.g. personal data) is a model input,
    and every feature has a type the serving path supports."""
    forbidden = {f.lower() for f in subject.config.tests.data.forbidden_features}
    if not forbidden:
        raise NotApplicable("no forbidden_features listed in [tests.data]")
    used = [n for n in subject.signature.names if n.lower() in forbidden]
    odd = [f.name for f in subject.signature.features if f.type not in ("string", "float")]
    ok = not used and not odd
    return CheckResult(
        ok,
        (f"forbidden features used: {used}" if used else "no forbidden feature is an input")
        + (f"; unsupported types: {odd}" if odd else ""),
        {"forbidden_features_used": float(len(used))},
    )


CHECKS = [
    Check(
        "data.schema",
        "data matches the model's schema",
        schema,
        lambda c: c.tests.data.schema_check,
        ("data-1", "monitor-2"),
    ),
    Check(
        "data.ranges",
        "numeric values within their ranges",
        ranges,
        lambda c: bool(c.tests.data.ranges),
        ("data-1",),
    ),
    Check("data.nulls", "missing values within the limit", nulls, always, ("monitor-2",)),
    Check("data.duplicates", "duplicate rows within the limit", duplicates, always, ()),
    Check("data.label_balance", "every class well represented", label_balance, always, ()),
    Check(
        "data.leakage",
        "no held-out row is a training row",
        leakage,
        lambda c: c.tests.data.leakage,
        (),
    ),
    Check(
        "data.skew",
        "training and serving features agree",
        skew,
        lambda c: c.tests.data.skew,
        ("monitor-3",),
    ),
    Check("data.meta", "no forbidden feature; supported types", meta, always, ("data-4",)),
]
