"""ComponentResources for the roles an organization plays in the collaboration.

- CollaborationOwner: the collaboration and the owner's membership (members added later: MemberChange).
- Member: an invited organization's membership.
- DataProducer: its data in S3/Glue, offered to the collaboration as a configured table.
- PrivacyBudget: the collaboration's differential-privacy budget, from the one member that sets it.
- ResultsStore: the results bucket and the role Clean Rooms writes them with.
- Analyst: the SQL analysis templates; PySparkJobs: the PySpark ones and their artifacts.
- Dashboard: QuickSight over the analyst's results.
"""
