-- The ML input channel's query for purchase_propensity: each shared customer's media engagement (org B)
-- and demographics (org A), labelled with whether the customer is a frequent buyer (org A: more than 20
-- orders). In AWS it runs over the collaboration's tables as an analysis template (queryrunner ml channel);
-- models/purchase_propensity/rehearse.py runs it on the data/ files.
SELECT m.sessions, m.engagement_score, r.age_group, r.region, m.channel,
       CAST(r.order_count > 20 AS INTEGER) AS frequent_buyer
FROM retail_purchases r
JOIN media_engagement m ON r.customer_key = m.customer_key
