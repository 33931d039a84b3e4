"""PrivacyBudget: the collaboration's one differential-privacy budget, set by one member.

Who sets it: the User Guide's differential-privacy pages speak to the member
whose table is protected ("You configure the differential privacy policy for
the collaboration to make your data tables protected with differential privacy
available for querying", differential-privacy; the console edits it under
"Tables associated by you", configure-differential-privacy), and the API lets
any member create it through its own membership ("The privacy budget template
is created in the collaboration that this membership belongs to",
CreatePrivacyBudgetTemplate; "Each collaboration can have only one"). So the
stack that declares `differentialPrivacy` creates it: the shipped config puts
it in the stack of the member whose table is protected (org-b); any other one
member may hold it instead (docs/configuration.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws_native.cleanrooms as cleanrooms

from model.config import PrivacyBudgetSpec


@dataclass
class PrivacyBudgetArgs:
    membership_id: pulumi.Input[str]
    """This organization's membership: the template is created in its collaboration."""
    spec: PrivacyBudgetSpec


class PrivacyBudget(pulumi.ComponentResource):
    template: cleanrooms.PrivacyBudgetTemplate

    def __init__(self, name: str, args: PrivacyBudgetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:privacy:PrivacyBudget", name, None, opts)
        self.template = cleanrooms.PrivacyBudgetTemplate(
            f"{name}-template",
            membership_identifier=args.membership_id,
            privacy_budget_type=cleanrooms.PrivacyBudgetTemplatePrivacyBudgetType.DIFFERENTIAL_PRIVACY,
            auto_refresh=cleanrooms.PrivacyBudgetTemplateAutoRefresh(args.spec.auto_refresh),
            parameters=cleanrooms.ParametersPropertiesArgs(
                epsilon=args.spec.epsilon, users_noise_per_query=args.spec.users_noise_per_query),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"privacy_budget_template_id": self.template.privacy_budget_template_identifier})
