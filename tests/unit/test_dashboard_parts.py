"""The dashboard's pure parts: traffic buckets, chart data, intervals, CSV export, sessions."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from radvigil.dashboard import charts
from radvigil.dashboard.audit import to_csv
from radvigil.dashboard.lineage import gate, promoted
from radvigil.dashboard.session import check_csrf, csrf_for
from radvigil.errors import ForbiddenError
from radvigil.registry import AliasEvent, Tag
from radvigil.service.traffic import bucket_for
from radvigil.store import AuditEvent

T0 = datetime(2026, 1, 5, 10, 0, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("span", "expected"),
    [(timedelta(seconds=20), 1), (timedelta(minutes=20), 60), (timedelta(days=2), 6 * 3600)],
)
def test_bucket_width_gives_at_most_about_30_buckets(span: timedelta, expected: int) -> None:
    assert bucket_for(span) == expected


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = charts.wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert charts.wilson(0, 5)[0] == 0.0 and charts.wilson(5, 5)[1] == 1.0
    assert all(np.isnan(charts.wilson(0, 0)))


def test_histogram_pair_shares_sum_to_one_and_goes_log_for_wide_ranges() -> None:
    rng = np.random.default_rng(0)
    config = charts.histogram_pair(rng.normal(100, 10, 200), rng.normal(120, 10, 50), title="mean")
    ref, cur = (d["data"] for d in config["data"]["datasets"])
    assert sum(ref) == pytest.approx(1) and sum(cur) == pytest.approx(1)
    wide = charts.histogram_pair([300, 400, 500], [20_000, 45_000], title="sharpness")
    assert "log scale" in wide["options"]["scales"]["x"]["title"]["text"]
    assert charts.histogram_pair([], [float("nan")], title="x") is None


def test_series_turns_non_finite_values_into_gaps() -> None:
    assert charts.series("s", [1.0, float("nan"), None, float("inf")], charts.BLUE)["data"] == [
        1.0,
        None,
        None,
        None,
    ]


def test_points_are_thinned_to_the_limit() -> None:
    data = charts.points("ref", np.arange(2000.0).reshape(1000, 2), charts.GREY, limit=100)
    assert len(data["data"]) == 100 and data["label"] == "ref (n=100)"


def _event(**overrides) -> AuditEvent:
    values = dict(
        id=1,
        created_at=T0,
        actor="ana",
        action="label",
        object_type="prediction",
        object_id="abc",
        model_version="m/1",
        request_id="abc",
        details={"label": "normal", "b": [1, 2]},
        prev_hash="0" * 64,
        hash="f" * 64,
    )
    return AuditEvent(**(values | overrides))


def test_audit_csv_has_every_field_and_neutralises_formulas() -> None:
    text = to_csv([_event(), _event(id=2, actor="=HYPERLINK(1)", object_id=None)])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["details"] == '{"b":[1,2],"label":"normal"}'
    assert rows[0]["created_at"] == "2026-01-05T10:00:07+00:00"
    assert rows[1]["actor"] == "'=HYPERLINK(1)" and rows[1]["object_id"] == ""


def test_csrf_token_is_bound_to_the_key() -> None:
    token = csrf_for("rvk_a_secret")
    assert token != csrf_for("rvk_a_other") and len(token) == 64
    check_csrf(token, token)
    for sent in (None, "", token[:-1] + "0"):
        with pytest.raises(ForbiddenError, match="security token"):
            check_csrf(token, sent)


def test_gate_tag_and_alias_history_reading() -> None:
    assert gate({}) == {"state": "none", "failed": []}
    assert gate({Tag.GATE: '{"passed": false, "failed": ["min_auc:pneumonia"]}'}) == {
        "state": "failed",
        "failed": ["min_auc:pneumonia"],
    }
    assert gate({Tag.GATE: "not json"})["state"] == "unreadable"
    history = [
        AliasEvent(alias="champion", version="1", actor="a", time="t1"),
        AliasEvent(alias="champion", version="2", actor="b", time="t2"),
        AliasEvent(alias="champion", version="1", actor="c", time="t3"),
    ]
    found = promoted(history, "champion", "1")
    assert found is not None and found.actor == "c"
    assert promoted(history, "challenger", "1") is None


def _request(scheme: str = "http", headers: dict[str, str] | None = None):
    from starlette.requests import Request

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw.append((b"host", b"rv.example:8000"))
    return Request(
        {
            "type": "http",
            "scheme": scheme,
            "method": "POST",
            "path": "/dashboard/login",
            "query_string": b"",
            "headers": raw,
            "server": ("rv.example", 8000),
        }
    )


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_session_cookie_is_http_only_strict_scoped_and_secure_over_https(scheme: str) -> None:
    from starlette.responses import Response

    from radvigil.dashboard.session import SESSION_COOKIE, set_cookie

    response = Response()
    set_cookie(_request(scheme), response, SESSION_COOKIE, "rvk_a_b", 3600)
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/dashboard" in header
    assert ("Secure" in header) == (scheme == "https")


def test_posts_from_another_origin_are_refused() -> None:
    from radvigil.dashboard.session import check_origin

    check_origin(_request())  # no Origin or Referer: nothing to compare
    check_origin(_request(headers={"Origin": "http://rv.example:8000"}))
    check_origin(_request(headers={"Referer": "http://rv.example:8000/dashboard/models"}))
    for source in ({"Origin": "https://evil.example"}, {"Referer": "http://rv.example:9/x"}):
        with pytest.raises(ForbiddenError, match="another site"):
            check_origin(_request(headers=source))


def test_drift_ranking_orders_the_newest_window_by_times_threshold() -> None:
    from radvigil.dashboard.monitors import ranking
    from radvigil.store import MonitorResultPublic

    def row(i: int, detector: str, end: datetime, times: float | None) -> MonitorResultPublic:
        return MonitorResultPublic(
            id=i,
            created_at=end,
            model_name="m",
            model_version="1",
            window_kind="count",
            window_start=end - timedelta(hours=1),
            window_end=end,
            n=50,
            detector=detector,
            statistic=1.0,
            threshold=0.5,
            effect_size=0.1 * i,
            details={} if times is None else {"times_threshold": times},
        )

    later = T0 + timedelta(hours=2)
    rows = [row(1, "mmd", T0, 90.0), row(2, "mmd", later, 2.0), row(3, "bbsd", later, 40.0)]
    rows.append(row(4, "cbpe", later, None))
    ranked = ranking(rows, "all")
    assert [r["detector"] for r in ranked] == ["bbsd", "mmd", "cbpe"]
    assert ranked[0]["effect_size"] == pytest.approx(0.3)
    assert ranking(rows, "site=B") == []
