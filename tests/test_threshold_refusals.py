"""Each construct custom-sql-capabilities marks "No" for the Spark engine with a minimum aggregation
threshold is refused over a thresholded table, and the refusal names it as the template may spell it.

`a IS NOT DISTINCT FROM b` and `a <=> b` are one operator in Spark SQL (sqlglot parses both to
NullSafeEQ); the page lists it as `<=>`, so a template written with the words is told both names.
"""

from __future__ import annotations

import pytest

from model.templates import parse_query
from model.validator import validate
from tests.test_validator import collab, write_template  # noqa: F401 (collab: a fixture)

R = "retail_purchases r"
CASES = {
    "IS NOT DISTINCT FROM": (f"SELECT r.region, COUNT(*) AS n FROM {R} WHERE r.region IS NOT DISTINCT FROM "
                             "r.age_group GROUP BY r.region", "<=> (IS NOT DISTINCT FROM)"),
    "<=>": (f"SELECT r.region, COUNT(*) AS n FROM {R} WHERE r.region <=> r.age_group GROUP BY r.region",
            "<=> (IS NOT DISTINCT FROM)"),
    "CUBE": (f"SELECT r.region, COUNT(*) AS n FROM {R} GROUP BY CUBE(r.region)", "GROUP BY CUBE"),
    "ROLLUP": (f"SELECT r.region, COUNT(*) AS n FROM {R} GROUP BY ROLLUP(r.region)", "GROUP BY ROLLUP"),
    "EXCEPT": (f"SELECT r.region, COUNT(*) AS n FROM {R} GROUP BY r.region EXCEPT "
               f"SELECT r.region, COUNT(*) AS n FROM {R} WHERE r.order_count > 3 GROUP BY r.region", "EXCEPT"),
    "BOOL_AND": (f"SELECT r.region, BOOL_AND(r.order_count > 3) AS b, COUNT(*) AS n FROM {R} GROUP BY r.region",
                 "BOOL_AND"),
}


@pytest.mark.parametrize("construct", sorted(CASES))
def test_a_construct_marked_no_is_refused_by_its_name(tmp_path, collab, construct):  # noqa: F811
    sql, name = CASES[construct]
    found = validate(parse_query(write_template(tmp_path, "refused", sql)), collab)
    wanted = f"{name} is not supported on the Spark engine when a minimum aggregation threshold is set"
    assert any(wanted in str(r) and "[custom-sql-capabilities" in str(r) for r in found.refusals), [
        str(r) for r in found.refusals]


def test_a_supported_query_over_the_same_table_is_not_refused(tmp_path, collab):  # noqa: F811
    sql = f"SELECT r.region, COUNT(*) AS n FROM {R} WHERE r.region = r.age_group OR r.order_count > 3 GROUP BY r.region"
    assert not validate(parse_query(write_template(tmp_path, "fine", sql)), collab).refusals
