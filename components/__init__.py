"""ComponentResources for the roles an organization plays in the collaboration.

- DataProducer: its data in S3/Glue, offered to the collaboration as a configured table.
- CollaborationOwner: the collaboration, the owner's membership, the privacy budget.
- Analyst: results bucket, result configuration and analysis templates.
- Dashboard: QuickSight over the analyst's results.
"""
