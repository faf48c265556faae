"""The demo's headline table is built from the files its stages wrote: P and D per seed."""
from __future__ import annotations

import json

from distilvpr_core.app.demo import render, summarise


def _eval(path, student_p, student_d, teacher=(90.0, 80.0)):
    def model(p, d):
        return {"R@1": p, "protocols": {"unseen_places": {"R@1": p}, "deployment": {
            "R@1": d, "R@1 by query condition": {"noon/clear/summer": d + 10, "night/clear/summer": d - 10}}}}
    doc = {"test_traversals": ["test_noon", "test_dusk"], "student": model(student_p, student_d),
           "teacher": model(*teacher), "teacher_image": model(20.0, 10.0)}
    path.mkdir(parents=True)
    (path / "eval.json").write_text(json.dumps(doc))


def test_summary_reports_both_protocols_per_seed_with_spread(tmp_path):
    runs = tmp_path / "runs"
    _eval(runs / "20260101-000000-distilvpr", 40.0, 30.0)
    _eval(runs / "20260101-000001-nodistill", 35.0, 20.0)
    _eval(runs / "20260101-000002-distilvpr_seed1", 44.0, 34.0)
    _eval(runs / "20260101-000003-nodistill_seed1", 37.0, 26.0)
    def stage(best, accepted, correct):
        return {"max_recall_at_100_precision": best, "operating_point": {"accepted": accepted, "correct": correct}}
    for path in ("ros", "offline"):
        (tmp_path / "replay" / path).mkdir(parents=True)
        (tmp_path / "replay" / path / "metrics.json").write_text(json.dumps({"complete": True, "metrics": {
            "recall_at_n": {"1": 0.5}, "max_recall_at_100_precision": 0.1,
            "latency_s": {"median": 0.01, "p99": 0.02},
            "operating_point": {"accepted": 3, "accepted_correct": 3},
            "pose": {"stages": {"published": {"poses": 3, "wrong_closures": 0,
                                              "share_of_poses": {"0.5m_5deg": 1.0}}}},
            "stages": {"stages": {"raw": stage(0.02, 71, 33), "geometric": stage(0.062, 4, 4)}}}}))
    s = summarise(tmp_path, [0, 1])
    assert s["R@1"]["unseen_places"]["student_distilvpr"] == [40.0, 44.0]
    assert s["R@1"]["deployment"]["student_nodistill"] == [20.0, 26.0]
    text = render(s)
    assert "DistilVPR student, R@1 P (unseen places) | 42.0 ± 2.8 % (40.0 / 44.0)" in text
    assert "student without distillation, R@1 D (deployment, map = train_noon) | 23.0 ± 4.2 %" in text
    assert "on P: +5.0 / +7.0 R@1 points" in text and "on D: +10.0 / +8.0 R@1 points" in text
    assert "| geometric stage (offline): max recall at 100 % precision; closures accepted / correct " \
        "at the default settings | 6.2 %; 4 / 4 |" in text
    assert "| raw stage (offline)" in text and "71 / 33" in text
    # what the node itself published, beside the offline stages
    assert "| node (ROS): loop closures published / correct; metric poses published / wrong (> 5 m) | " \
        "3 / 3; 3 / 0 |" in text
    # the per-condition D row, mean over seeds
    assert s["D_by_condition"]["student_distilvpr"]["night/clear/summer"] == [20.0, 24.0]
    assert "| DistilVPR student, R@1 D per query condition | night/clear/summer 22.0; " \
        "noon/clear/summer 42.0 % |" in text
    assert "| student without distillation, R@1 D per query condition | night/clear/summer 13.0;" in text
