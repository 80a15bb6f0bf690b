"""What the online analysis keeps of each answer awaiting a label: the first row's
predicted label per variant, counted once a label comes, in objects the garbage
collector does not walk (a full collection over 200,000 dicts stalled every answer)."""

from __future__ import annotations

import gc

from shipml.rollout.analysis import ALREADY_LABELLED, MATCHED, OK, Analysis


def test_labels_count_per_variant_on_the_first_row():
    analysis = Analysis()
    analysis.record("champion", 0.001, OK, "r1", ["Adelie", "Gentoo"])
    analysis.record("challenger", 0.001, OK, "r1", "Gentoo")
    analysis.record("challenger", 0.001, OK, "r1", "Adelie")  # a variant's newer answer wins
    analysis.record("champion", 0.001, OK, "r2", 1)
    assert analysis.feedback("r1", ["Adelie"]) == MATCHED
    assert analysis.feedback("r1", "Adelie") == ALREADY_LABELLED
    assert analysis.feedback("r2", 1.0) == MATCHED  # compared as text: "1" is not "1.0"
    champion, challenger = analysis.stats("champion"), analysis.stats("challenger")
    assert (champion.labelled, champion.correct) == (2, 1)
    assert (challenger.labelled, challenger.correct) == (1, 1)


def test_answers_awaiting_a_label_are_nothing_for_the_garbage_collector():
    analysis = Analysis()
    for i in range(1000):
        analysis.record("champion", 0.001, OK, f"id-{i}", ["Adelie"] if i % 2 else 3)
        analysis.compare("shadow", {"label": "Adelie"}, {"label": ["Gentoo"]}, f"id-{i}")
    gc.collect()
    kept = list(analysis.predictions.values())
    assert len(kept) == 1000 and all(len(entry) == 5 for entry in kept)  # 2 variants
    assert not any(gc.is_tracked(entry) for entry in kept)


def test_garbage_from_a_model_server_is_compared_without_raising_and_kept_small():
    """A shadow (or champion) that answers a megabyte label, or probabilities that are
    no numbers: the shadow still gets its label counted, nothing raises (a traceback per
    mirrored request, and the shadow's label lost), and no megabyte is kept per answer."""
    analysis = Analysis()
    huge = "x" * 1_000_000
    garbage = [([], []), (["a", "b"], ["c", "d"]), ([None], [1.0]), ([[1, 2], [3]], [[1], [2]])]
    for i, (p1, p2) in enumerate(garbage):
        analysis.record("champion", 0.001, OK, f"g{i}", "Adelie")
        analysis.compare(
            "shadow",
            {"label": "Adelie", "probabilities": p1},
            {"label": huge, "probabilities": p2},
            f"g{i}",
        )
    assert analysis.shadow["shadow"].compared == 4 and not analysis.shadow["shadow"].diffs
    assert all(len(x) <= 257 for entry in analysis.predictions.values() for x in entry[1:])
    assert analysis.feedback("g0", huge[:256]) == MATCHED  # the longest label: no match
    assert (analysis.stats("shadow").labelled, analysis.stats("shadow").correct) == (1, 0)
