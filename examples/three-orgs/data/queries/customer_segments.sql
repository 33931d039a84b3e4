-- description: Customers, average purchase and average engagement per age group and region, for customers both organizations know.
-- param: min_orders INTEGER default 1
--
-- Tables are named by their configured table association names
-- (retail_purchases is org A's, media_engagement is org B's). The join is on
-- the shared pseudonymous key, never on dimensions; the key itself is never
-- selected. The collaboration's analysis rules add the minimum group size
-- (aggregation threshold) or differential-privacy noise on top of this SQL.
SELECT
    r.age_group,
    r.region,
    COUNT(*) AS customer_count,
    AVG(r.purchase_amount) AS avg_purchase,
    AVG(m.engagement_score) AS avg_engagement
FROM retail_purchases r
INNER JOIN media_engagement m
    ON r.customer_key = m.customer_key
WHERE r.order_count >= :min_orders
GROUP BY r.age_group, r.region
