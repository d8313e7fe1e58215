"""deploy/cloudformation/fleet.yaml deployed into moto's CloudFormation: the Step Functions state machine runs the
task definition the stack creates, with the role the stack creates, and both roles grant exactly what
rotator/fleet_iam.py returns. moto has no AWS::Scheduler::Schedule: the schedule is conditional (empty
ScheduleExpression here) and asserted on the YAML; cfn-lint (scripts/lint-infra.sh) checks every branch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from rotator import fleet_iam
from tests.harness import AwsEnv
from tests.integration.test_cfn_templates import ACCOUNT, normalized, role_policy

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation" / "fleet.yaml"


def deploy(aws: AwsEnv, **parameters: str) -> tuple[str, dict[str, str]]:
    name = f"{aws.prefix.replace('_', '-')}-fleet"
    cfn = aws.client("cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return name, {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def test_fleet_state_machine_runs_the_stacks_task_with_its_roles(aws: AwsEnv) -> None:
    kms = f"arn:aws:kms:{aws.region}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    parameters = {
        "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/rotator:1.0.0",
        "ClusterName": f"{aws.prefix}-app",
        "Subnets": "subnet-0a1b2c3d,subnet-4e5f6a7b",
        "SecurityGroups": "sg-0123456789abcdef0",
        "SecretNamePrefix": "prod/",
        "KmsKeyArn": kms,
        "FleetBucket": "rotator-fleet-bucket",
        "MaxConcurrency": "25",
        "LockedRetries": "4",
    }
    stack, outputs = deploy(aws, **parameters)

    described = aws.client("stepfunctions").describe_state_machine(stateMachineArn=outputs["StateMachineArn"])
    assert described["roleArn"] == outputs["StateMachineRoleArn"]
    definition: dict[str, Any] = json.loads(described["definition"])
    fleet_map = definition["States"][definition["StartAt"]]
    assert fleet_map["Type"] == "Map" and fleet_map["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert fleet_map["ItemReader"]["Parameters"] == {"Bucket": "rotator-fleet-bucket", "Key": "rotator/fleet.json"}
    assert fleet_map["MaxConcurrency"] == 25 and fleet_map["ToleratedFailurePercentage"] == 100
    assert fleet_map["ResultWriter"]["Parameters"]["Prefix"] == "rotator/results/"
    states = fleet_map["ItemProcessor"]["States"]
    rotate = states["Rotate"]
    assert rotate["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    assert rotate["Parameters"]["TaskDefinition"] == outputs["RotationTaskDefinitionArn"]
    assert rotate["Parameters"]["Cluster"].endswith(f":cluster/{parameters['ClusterName']}")
    network = rotate["Parameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["Subnets"] == ["subnet-0a1b2c3d", "subnet-4e5f6a7b"]
    assert network["SecurityGroups"] == ["sg-0123456789abcdef0"]
    assert rotate["Parameters"]["Overrides"]["ContainerOverrides"] == [
        {"Name": "rotator", "Environment.$": "$.environment"}
    ]
    # Exit 3 (locked) is tried again, LockedRetries times; any other failure fails that database alone.
    assert {c["ErrorEquals"][0]: c["Next"] for c in rotate["Catch"]} == {
        "States.TaskFailed": "ReadExitCode",
        "States.ALL": "NotStarted",
    }
    choices = states["ExitCode"]["Choices"]
    locked = next(c for c in choices if c.get("Next") == "WaitForTheLock")["And"]
    assert {"Variable": "$.task.exit_code", "NumericEquals": 3} in locked
    assert {"Variable": "$.attempt", "NumericLessThan": 4} in locked
    assert states["CountAttempt"]["Next"] == "Rotate" and states["ExitCode"]["Default"] == "RotationFailed"
    assert states["RotationFailed"]["Type"] == "Fail"

    task_definition = aws.client("ecs").describe_task_definition(taskDefinition=outputs["RotationTaskDefinitionArn"])
    assert task_definition["taskDefinition"]["family"] == outputs["TaskDefinitionFamily"] == f"{stack}-rotator"

    task_policy = role_policy(aws, outputs["TaskRoleArn"], "rotator-fleet-task")
    assert normalized(task_policy) == normalized(
        fleet_iam.fleet_task_policy(region=aws.region, account_id=ACCOUNT, secret_prefix="prod/", kms_key_arn=kms)
    )
    machine_policy = role_policy(aws, outputs["StateMachineRoleArn"], "rotator-fleet-state-machine")
    assert normalized(machine_policy) == normalized(
        fleet_iam.fleet_state_machine_policy(
            region=aws.region,
            account_id=ACCOUNT,
            cluster_name=parameters["ClusterName"],
            task_definition_family=outputs["TaskDefinitionFamily"],
            task_role_arn=outputs["TaskRoleArn"],
            execution_role_arn=outputs["ExecutionRoleArn"],
            bucket="rotator-fleet-bucket",
            fleet_key="rotator/fleet.json",
            results_prefix="rotator/results/",
            state_machine_name=f"{stack}-fleet",
        )
    )
    assert "ScheduleArn" not in outputs


def test_schedule_starts_the_state_machine() -> None:
    template = cfn_yaml.load(str(TEMPLATE))
    schedule = template["Resources"]["FleetSchedule"]
    assert schedule["Type"] == "AWS::Scheduler::Schedule" and schedule["Condition"] == "HasSchedule"
    assert schedule["Properties"]["Target"]["Arn"] == {"Ref": "FleetStateMachine"}
    role = template["Resources"]["SchedulerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert role == [
        {
            "Sid": "StartFleet",
            "Effect": "Allow",
            "Action": "states:StartExecution",
            "Resource": {"Ref": "FleetStateMachine"},
        }
    ]
