"""Order mix: customers and purchase totals per region and order-count band.

The PySpark analysis template interface (AWS Clean Rooms User Guide,
create-user-script): Clean Rooms calls entrypoint(context) with the Spark
session, the referenced tables as DataFrames and the analysis parameters, and
writes every DataFrame of the returned "results" to the result receiver's
bucket. The script reads no S3, Glue or network itself.
"""

from pyspark.sql import functions as F


def entrypoint(context):
    purchases = context["referencedTables"]["retail_purchases"]
    min_orders = int((context.get("analysisParameters") or {}).get("min_orders", 1))
    band = (F.when(F.col("order_count") < 10, "1-9")
            .when(F.col("order_count") < 20, "10-19")
            .otherwise("20+"))
    order_mix = (purchases
                 .where(F.col("order_count") >= min_orders)
                 .withColumn("order_band", band)
                 .groupBy("region", "order_band")
                 .agg(F.count(F.lit(1)).alias("customers"), F.sum("purchase_amount").alias("total_purchase")))
    return {"results": {"order_mix": order_mix}}
