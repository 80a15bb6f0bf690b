"""Browser checks: the model server's demo page driven in a real headless Chromium."""

from __future__ import annotations

from typing import Any

import numpy as np

from shipml.testing.api_checks import _raw_rows
from shipml.testing.browser import check_demo_page
from shipml.testing.check import Check, CheckResult, Env, always
from shipml.testing.data_checks import _records
from shipml.testing.subject import Subject


def demo_page(subject: Subject, env: Env) -> CheckResult:
    """A person's first look: open the demo page at ``/``, fill the form with held-out
    rows (one with a missing value, if any), press Predict; the page shows the model's
    answer and no script error. Screenshots go into the results."""
    rows = _raw_rows(subject, 40)
    records = _records(rows)
    picks = [0]
    with_gap = next((i for i, r in enumerate(records) if any(v is None for v in r.values())), None)
    if with_gap is not None and with_gap != 0:
        picks.append(with_gap)
    X = subject.holdout_features
    expected_labels, expected_proba = subject.predict(X.iloc[picks])
    url = env.server_url() + "/"
    details: list[dict[str, Any]] = []
    problems: list[str] = []
    shots: list[str] = []
    for n, i in enumerate(picks):
        shot = env.output / "screenshots" / f"demo-page-{n + 1}.png"
        page = check_demo_page(url, records[i], shot)
        shots.append(str(page.screenshot))
        want = np.asarray(expected_labels).tolist()[n]
        ok = page.error is None and page.label == str(want) and not page.console_errors
        if ok and expected_proba is not None and page.probabilities:
            classes = [str(c) for c in subject.signature.classes]
            got = np.asarray([page.probabilities.get(c, np.nan) for c in classes])
            ok = bool(np.allclose(got, expected_proba[n], atol=1e-3))
        console = len(page.console_errors)
        details.append(
            {
                "row": i,
                "expected": str(want),
                "shown": page.label,
                "error": page.error or "",
                "console_errors": console,
            }
        )
        if not ok:
            problems.append(
                f"row {i}: page showed {page.label!r} (expected {want!r})"
                + (f", error {page.error!r}" if page.error else "")
                + (f", console errors {page.console_errors[:2]}" if page.console_errors else "")
            )
    return CheckResult(
        not problems,
        "; ".join(problems)
        or f"{len(picks)} row(s) entered on the demo page: the page shows the model's answer",
        {"demo_page_failures": float(len(problems))},
        details,
        shots,
    )


CHECKS = [
    Check("browser.demo_page", "the demo page answers in a real browser", demo_page, always),
]
