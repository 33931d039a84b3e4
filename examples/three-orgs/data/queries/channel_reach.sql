-- description: Shared customers and average spend per engagement channel and product category.
-- param: min_sessions INTEGER default 1
SELECT
    m.channel,
    r.product_category,
    COUNT(*) AS customer_count,
    SUM(r.purchase_amount) AS total_purchase
FROM retail_purchases r
INNER JOIN media_engagement m
    ON r.customer_key = m.customer_key
WHERE m.sessions >= :min_sessions
GROUP BY m.channel, r.product_category
