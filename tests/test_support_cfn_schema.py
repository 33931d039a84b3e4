"""Tests for tests/support/cfn_schema.py (aws-native inputs vs CloudFormation schemas)."""

import copy

import pytest

from tests.support.cfn_schema import (
    UnknownResourceTypeError,
    cfn_type_name,
    create_only_properties,
    read_only_properties,
    required_properties,
    to_cfn_properties,
    to_sdk_name,
    validate_native,
)

COLLABORATION = "aws-native:cleanrooms:Collaboration"
CONFIGURED_TABLE = "aws-native:cleanrooms:ConfiguredTable"
PRIVACY_BUDGET_TEMPLATE = "aws-native:cleanrooms:PrivacyBudgetTemplate"

MEMBERSHIP_ID = "0123abcd-0123-4567-89ab-0123456789ab"

# Inputs as MockResourceArgs.inputs delivers them: camelCase wire names,
# numbers as floats (protobuf).
VALID_COLLABORATION = {
    "name": "retail-media",
    "description": "Retail purchases x media engagement",
    "creatorDisplayName": "Retailer",
    "creatorMemberAbilities": ["CAN_QUERY", "CAN_RECEIVE_RESULTS"],
    # CloudFormation: CreatorMLMemberAbilities.CustomMLMemberAbilities
    "creatorMlMemberAbilities": {"customMlMemberAbilities": ["CAN_RECEIVE_MODEL_OUTPUT"]},
    "creatorPaymentConfiguration": {"queryCompute": {"isResponsible": True}},
    "queryLogStatus": "ENABLED",
    "dataEncryptionMetadata": {
        "allowCleartext": True,
        "allowDuplicates": False,
        "allowJoinsOnColumnsWithDifferentNames": False,
        "preserveNulls": True,
    },
    "members": [{"accountId": "111122223333", "displayName": "Media", "memberAbilities": []}],
    "tags": [{"key": "project", "value": "clean-rooms"}],
}

VALID_CONFIGURED_TABLE = {
    "name": "purchases",
    "analysisMethod": "DIRECT_QUERY",
    "allowedColumns": ["hashed_email", "amount", "purchase_date"],
    "tableReference": {"glue": {"databaseName": "retail", "tableName": "purchases"}},
    "analysisRules": [
        {
            "type": "CUSTOM",
            "policy": {
                "v1": {
                    "custom": {
                        "allowedAnalyses": ["ANY_QUERY"],
                        "differentialPrivacy": {"columns": [{"name": "hashed_email"}]},
                    }
                }
            },
        }
    ],
}

VALID_PRIVACY_BUDGET_TEMPLATE = {
    "membershipIdentifier": MEMBERSHIP_ID,
    "privacyBudgetType": "DIFFERENTIAL_PRIVACY",
    "autoRefresh": "CALENDAR_MONTH",
    "parameters": {"epsilon": 5.0, "usersNoisePerQuery": 30.0},
}


def test_valid_collaboration_passes():
    assert validate_native(COLLABORATION, VALID_COLLABORATION) == []


def test_collaboration_without_description_fails_naming_it():
    inputs = {k: v for k, v in VALID_COLLABORATION.items() if k != "description"}
    errors = validate_native(COLLABORATION, inputs)
    assert len(errors) == 1, errors
    assert "description" in errors[0] and "Description" in errors[0]
    assert "required" in errors[0]


def test_collaboration_query_log_status_on_fails_naming_it():
    inputs = {**VALID_COLLABORATION, "queryLogStatus": "ON"}
    errors = validate_native(COLLABORATION, inputs)
    assert len(errors) == 1, errors
    assert errors[0].startswith("$.queryLogStatus (CloudFormation: QueryLogStatus):")
    assert "'ON' is not one of" in errors[0]


def test_privacy_budget_template_epsilon_above_maximum_fails():
    assert validate_native(PRIVACY_BUDGET_TEMPLATE, VALID_PRIVACY_BUDGET_TEMPLATE) == []
    inputs = copy.deepcopy(VALID_PRIVACY_BUDGET_TEMPLATE)
    inputs["parameters"]["epsilon"] = 25.0
    errors = validate_native(PRIVACY_BUDGET_TEMPLATE, inputs)
    assert errors == [
        "$.parameters.epsilon (CloudFormation: Parameters.Epsilon): "
        "25 is greater than the maximum of 20"
    ]


def test_configured_table_custom_differential_privacy_rule_validates():
    assert validate_native(CONFIGURED_TABLE, VALID_CONFIGURED_TABLE) == []
    converted = to_cfn_properties(CONFIGURED_TABLE, VALID_CONFIGURED_TABLE)
    custom = converted["AnalysisRules"][0]["Policy"]["V1"]["Custom"]
    assert custom == {
        "AllowedAnalyses": ["ANY_QUERY"],
        "DifferentialPrivacy": {"Columns": [{"Name": "hashed_email"}]},
    }


def test_configured_table_errors_inside_one_of_point_at_the_matching_branch():
    inputs = copy.deepcopy(VALID_CONFIGURED_TABLE)
    custom = inputs["analysisRules"][0]["policy"]["v1"]["custom"]
    custom["differentialPrivacy"]["columns"] = [{"nam": "hashed_email"}]
    errors = validate_native(CONFIGURED_TABLE, inputs)
    assert errors and all(
        e.startswith("$.analysisRules[0].policy.v1.custom.differentialPrivacy.columns[0]")
        for e in errors
    ), errors
    assert any("'nam'" in e for e in errors)


def test_unknown_property_fails():
    errors = validate_native(COLLABORATION, {**VALID_COLLABORATION, "queryLogging": "ENABLED"})
    assert errors == ["$: unknown property 'queryLogging' (additionalProperties is false)"]
    nested = copy.deepcopy(VALID_COLLABORATION)
    nested["members"][0]["role"] = "reader"
    errors = validate_native(COLLABORATION, nested)
    assert errors == [
        "$.members[0] (CloudFormation: Members[0]): unknown property 'role' "
        "(additionalProperties is false)"
    ]


def test_read_only_property_cannot_be_set():
    errors = validate_native(COLLABORATION, {**VALID_COLLABORATION, "arn": "arn:aws:x"})
    assert errors == ["$.arn (CloudFormation: Arn): read-only property, cannot be set"]


def test_free_form_maps_keep_their_keys():
    # IAM policy documents are untyped objects: keys must not be PascalCased
    # (a lower-case "statement" stays as is) and nothing inside is validated.
    inputs = {
        "assumeRolePolicyDocument": {"Version": "2012-10-17", "statement": []},
        "policies": [{"policyName": "p", "policyDocument": {"Version": "2012-10-17"}}],
    }
    converted = to_cfn_properties("aws-native:iam:Role", inputs)
    assert converted["AssumeRolePolicyDocument"] == {"Version": "2012-10-17", "statement": []}
    assert converted["Policies"] == [
        {"PolicyName": "p", "PolicyDocument": {"Version": "2012-10-17"}}
    ]
    assert validate_native("aws-native:iam:Role", inputs) == []


def test_unknown_values_are_skipped():
    from pulumi.output import Unknown

    inputs = {**VALID_COLLABORATION, "description": None, "name": Unknown(), "members": [Unknown()]}
    assert validate_native(COLLABORATION, inputs) == []
    # Known values next to unknown ones are still checked.
    assert validate_native(COLLABORATION, {**inputs, "queryLogStatus": "ON"})


def test_secret_values_are_unwrapped():
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
              "value": "ON"}
    errors = validate_native(COLLABORATION, {**VALID_COLLABORATION, "queryLogStatus": secret})
    assert len(errors) == 1 and "'ON' is not one of" in errors[0]


def test_type_names_and_property_lists():
    assert cfn_type_name(COLLABORATION) == "AWS::CleanRooms::Collaboration"
    assert cfn_type_name("aws-native:cleanroomsml:TrainingDataset") == (
        "AWS::CleanRoomsML::TrainingDataset"
    )
    assert cfn_type_name("aws-native:configuration:ConfigRule") == "AWS::Config::ConfigRule"
    assert cfn_type_name("aws-native:s3:Bucket") == "AWS::S3::Bucket"
    with pytest.raises(UnknownResourceTypeError):
        cfn_type_name("aws-native:cleanrooms:NoSuchThing")

    assert "creatorMlMemberAbilities" in create_only_properties(COLLABORATION)
    assert "queryLogStatus" in create_only_properties(COLLABORATION)
    assert "parameters.resourceArn" in create_only_properties(PRIVACY_BUDGET_TEMPLATE)
    assert sorted(required_properties(COLLABORATION)) == [
        "creatorDisplayName", "description", "name", "queryLogStatus"
    ]
    assert "arn" in read_only_properties(COLLABORATION)
    assert to_sdk_name("KMSKeyId") == "kmsKeyId"
    assert to_sdk_name("NotificationARNs") == "notificationArns"
