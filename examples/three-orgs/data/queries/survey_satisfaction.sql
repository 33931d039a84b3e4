-- description: Panel members who also shop at org A: count and average satisfaction per panel segment, brand awareness and region.
-- param: min_orders INTEGER default 1
--
-- Reads org C's survey_panel (an aggregation threshold of 5 customers per group,
-- set by org C) and org A's retail_purchases (its own threshold of 3): each
-- output row must satisfy both, so groups of 3 or 4 customers are left out.
SELECT
    s.panel_segment,
    s.brand_aware,
    r.region,
    COUNT(*) AS customer_count,
    AVG(s.satisfaction) AS avg_satisfaction
FROM retail_purchases r
INNER JOIN survey_panel s
    ON r.customer_key = s.customer_key
WHERE r.order_count >= :min_orders
GROUP BY s.panel_segment, s.brand_aware, r.region
