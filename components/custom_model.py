"""CustomModel: a member's own model algorithm, offered to the collaboration (Clean Rooms ML custom models).

"The model provider must create an image and store it in Amazon ECR" (User Guide, custom-models): an ECR
repository (KMS-encrypted, immutable tags, scanned on push) for the training and inference images of
models/<name>/; a role Clean Rooms ML assumes to pull them (the User Guide's policy, "Create a service role
to provide a custom ML model", ml-roles); once the images are pushed (``images_pushed``), the configured
model algorithm (its containers, metric definitions and KMS key) and its association in this member's
membership with its privacy configuration: who receives container logs, how noisy the metrics are, how
large artifacts, exports and inference output may be. Every property of both is create-only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_aws_native.cleanroomsml as cleanroomsml

from components import iam
from components.iam_wait import service_role
from model.custom_model import CustomModelSpec


@dataclass
class CustomModelArgs:
    organization: str
    account_id: str
    region: str
    spec: CustomModelSpec
    membership_id: pulumi.Input[str] | None
    protect: bool = True
    iam_propagation_seconds: int = 30


def _privacy(spec: CustomModelSpec) -> cleanroomsml.ConfiguredModelAlgorithmAssociationPrivacyConfigurationArgs:
    """Who sees what a trained model leaves behind (AWS::CleanRoomsML::ConfiguredModelAlgorithmAssociation)."""
    ml = cleanroomsml
    logs = [ml.ConfiguredModelAlgorithmAssociationLogsConfigurationPolicyArgs(
        allowed_account_ids=list(spec.logs_to), log_type=ml.ConfiguredModelAlgorithmAssociationLogType.ERROR_SUMMARY)]
    return ml.ConfiguredModelAlgorithmAssociationPrivacyConfigurationArgs(
        policies=ml.ConfiguredModelAlgorithmAssociationPrivacyConfigurationPoliciesArgs(
            trained_models=ml.ConfiguredModelAlgorithmAssociationTrainedModelsConfigurationPolicyArgs(
                container_logs=logs,
                container_metrics=ml.ConfiguredModelAlgorithmAssociationMetricsConfigurationPolicyArgs(
                    noise_level=ml.ConfiguredModelAlgorithmAssociationNoiseLevelType(spec.metrics_noise)),
                max_artifact_size=ml.ConfiguredModelAlgorithmAssociationTrainedModelArtifactMaxSizeArgs(
                    unit=ml.ConfiguredModelAlgorithmAssociationTrainedModelArtifactMaxSizeUnitType.GB,
                    value=spec.max_artifact_gb)),
            trained_model_exports=ml.ConfiguredModelAlgorithmAssociationTrainedModelExportsConfigurationPolicyArgs(
                files_to_export=[ml.ConfiguredModelAlgorithmAssociationTrainedModelExportFileType(f)
                                 for f in spec.exports],
                max_size=ml.ConfiguredModelAlgorithmAssociationTrainedModelExportsMaxSizeArgs(
                    unit=ml.ConfiguredModelAlgorithmAssociationTrainedModelExportsMaxSizeUnitType.GB,
                    value=spec.max_export_gb)) if spec.exports else None,
            trained_model_inference_jobs=ml.ConfiguredModelAlgorithmAssociationTrainedModelInferenceJobsConfigurationPolicyArgs(
                container_logs=logs,
                max_output_size=ml.ConfiguredModelAlgorithmAssociationTrainedModelInferenceMaxOutputSizeArgs(
                    unit=ml.ConfiguredModelAlgorithmAssociationTrainedModelInferenceMaxOutputSizeUnitType.GB,
                    value=spec.max_inference_output_gb)) if spec.inference_tag else None))


class CustomModel(pulumi.ComponentResource):
    repository: aws.ecr.Repository
    algorithm: cleanroomsml.ConfiguredModelAlgorithm | None
    association: cleanroomsml.ConfiguredModelAlgorithmAssociation | None

    def __init__(self, name: str, args: CustomModelArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:ml:CustomModel", name, None, opts)
        spec = args.spec
        kept = pulumi.ResourceOptions(parent=self, protect=args.protect)
        self.key = aws.kms.Key(f"{name}-key", description=f"Encrypts {args.organization}'s {spec.name} model",
                               enable_key_rotation=True, deletion_window_in_days=30,
                               policy=iam.ml_model_key_policy(account_id=args.account_id, region=args.region),
                               opts=kept)
        self.repository = aws.ecr.Repository(
            f"{name}-repository", name=f"{args.organization}-cleanrooms-{spec.name}".replace("_", "-"),
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS",
                                                                                     kms_key=self.key.arn)],
            force_delete=not args.protect, opts=kept)
        role, _, ready = service_role(
            f"{name}-pull", organization=args.organization, purpose=f"ml-model-{spec.name}",
            description=f"Clean Rooms ML pulls {spec.name}'s images",
            trust=iam.ml_trust(region=args.region, account_id=args.account_id, resource="configured-model-algorithm"),
            policy=iam.model_pull_policy(self.repository.arn),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        self.algorithm = self.association = None
        if spec.images_pushed:
            image = pulumi.Output.concat(self.repository.repository_url, ":")
            self.algorithm = cleanroomsml.ConfiguredModelAlgorithm(
                f"{name}-algorithm", name=f"{args.organization}-{spec.name}", description=spec.description,
                role_arn=role.arn, kms_key_arn=self.key.arn,
                training_container_config=cleanroomsml.ConfiguredModelAlgorithmContainerConfigArgs(
                    image_uri=pulumi.Output.concat(image, spec.train_tag),
                    metric_definitions=[cleanroomsml.ConfiguredModelAlgorithmMetricDefinitionArgs(
                        name=f"validation:{metric}", regex=f"validation:{metric}=([0-9\\\\.]+)")
                        for metric in spec.metrics]),
                inference_container_config=cleanroomsml.ConfiguredModelAlgorithmInferenceContainerConfigArgs(
                    image_uri=pulumi.Output.concat(image, spec.inference_tag)) if spec.inference_tag else None,
                opts=pulumi.ResourceOptions(parent=self, depends_on=ready))
            if args.membership_id is not None:
                self.association = cleanroomsml.ConfiguredModelAlgorithmAssociation(
                    f"{name}-association", name=spec.name, membership_identifier=args.membership_id,
                    configured_model_algorithm_arn=self.algorithm.configured_model_algorithm_arn,
                    description=spec.description, privacy_configuration=_privacy(spec), opts=kept)
        self.register_outputs({"repository_url": self.repository.repository_url})

