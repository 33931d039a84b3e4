-- description: Customers all three organizations know: average engagement per brand awareness and age group.
--
-- Joins the three members' tables on the shared key: org B's differential
-- privacy adds noise to every aggregate, and org A's and org C's thresholds
-- still apply to the rows counted.
SELECT
    s.brand_aware,
    r.age_group,
    COUNT(*) AS customer_count,
    AVG(m.engagement_score) AS avg_engagement
FROM retail_purchases r
INNER JOIN media_engagement m
    ON r.customer_key = m.customer_key
INNER JOIN survey_panel s
    ON r.customer_key = s.customer_key
GROUP BY s.brand_aware, r.age_group
