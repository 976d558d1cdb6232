"""The production instance configs validate the way Dagster loads them: no cluster, no database.

`InstanceRef.from_dir` is what `DagsterInstance.get()` runs on `$DAGSTER_HOME/dagster.yaml`: it
checks the file against the instance schema and turns each section into the class it names.
Each class's own config is then processed against that class's `config_type()`, exactly as
`ConfigurableClassData.rehydrate` does, but without building the object (which would connect
to PostgreSQL or Kubernetes). Environment variables are set to stand-ins, so `{env: ...}`
values resolve.
"""

from __future__ import annotations

import importlib
import inspect
import shutil
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import construct_dagster_k8s_job

ROOT = Path(__file__).resolve().parents[1]
ROOT_YAML = ROOT / "dagster.yaml"
K8S_YAML = ROOT / "deploy" / "kubernetes" / "dagster.yaml"

ENV = {
    "DAGSTER_PG_HOST": "dagster-pg.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "stand-in-password",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_K8S_JOB_IMAGE": "registry.example/customer-analytics:0.1.0",
    "DAGSTER_K8S_NAMESPACE": "customer-analytics",
    "DAGSTER_K8S_SERVICE_ACCOUNT": "customer-analytics-runs",
    "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "customer-analytics-instance",
}


@pytest.fixture
def env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return ENV


def instance_ref(source: Path, home: Path, *, text: str | None = None) -> InstanceRef:
    """Dagster's own loading of a dagster.yaml placed in a fresh DAGSTER_HOME."""
    if text is None:
        shutil.copyfile(source, home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(text)
    return InstanceRef.from_dir(str(home))


def processed_config(data: ConfigurableClassData) -> tuple[type, dict]:
    """The class named by a config section and its config, validated and env-resolved."""
    klass = getattr(importlib.import_module(data.module_name), data.class_name)
    result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
    if not result.success:
        raise DagsterInvalidConfigError(
            f"Errors whilst loading configuration for {data.module_name}.{data.class_name}.",
            result.errors,
            data.config_dict,
        )
    return klass, result.value


def every_class_config(ref: InstanceRef) -> dict[str, tuple[type, dict]]:
    sections = {
        "local_artifact_storage": ref.local_artifact_storage_data,
        "compute_logs": ref.compute_logs_data,
        "storage": ref.storage_data,
        "run_storage": ref.run_storage_data,
        "event_log_storage": ref.event_storage_data,
        "schedule_storage": ref.schedule_storage_data,
        "scheduler": ref.scheduler_data,
        "run_coordinator": ref.run_coordinator_data,
        "run_launcher": ref.run_launcher_data,
    }
    return {name: processed_config(data) for name, data in sections.items() if data is not None}


@pytest.mark.parametrize("source", [ROOT_YAML, K8S_YAML], ids=["repo-root", "kubernetes"])
def test_instance_config_validates(source, env, tmp_path):
    ref = instance_ref(source, tmp_path)
    classes = every_class_config(ref)

    storage_class, storage = classes["storage"]
    assert storage_class.__name__ == "DagsterPostgresStorage"
    assert storage["postgres_db"] == {
        "hostname": "dagster-pg.internal", "port": 5432, "username": "dagster",
        "password": "stand-in-password", "db_name": "dagster",
        "scheme": "postgresql+psycopg2", "params": {},
    }
    assert classes["run_coordinator"][0].__name__ == "QueuedRunCoordinator"
    assert ref.settings["concurrency"]["runs"] == {
        "max_concurrent_runs": 4,
        "tag_concurrency_limits": [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        ],
    }
    assert ref.settings["telemetry"] == {"enabled": False}


def test_kubernetes_config_shares_storage_and_limits_with_the_repo_root():
    root = yaml.safe_load(ROOT_YAML.read_text())
    k8s = yaml.safe_load(K8S_YAML.read_text())
    for section in ("storage", "concurrency", "telemetry"):
        assert k8s[section] == root[section], section


def test_kubernetes_run_launcher_config(env, tmp_path):
    ref = instance_ref(K8S_YAML, tmp_path)
    klass, config = processed_config(ref.run_launcher_data)

    assert klass is K8sRunLauncher
    assert config["job_image"] == env["DAGSTER_K8S_JOB_IMAGE"]
    assert config["job_namespace"] == env["DAGSTER_K8S_NAMESPACE"]
    assert config["service_account_name"] == env["DAGSTER_K8S_SERVICE_ACCOUNT"]
    assert config["instance_config_map"] == env["DAGSTER_K8S_INSTANCE_CONFIG_MAP"]
    assert config["env_secrets"] == ["customer-analytics-secrets"]
    assert config["resources"] == {"requests": {"cpu": "1", "memory": "3Gi"},
                                   "limits": {"cpu": "2", "memory": "3Gi"}}
    # Every key the schema let through is one the launcher's constructor takes.
    inspect.signature(K8sRunLauncher).bind(**config)
    assert ref.settings["run_monitoring"]["enabled"] is True


def test_kubernetes_run_pod_renders_offline(env, tmp_path, monkeypatch):
    """Build the run worker's Kubernetes Job the way the launcher does, without a cluster."""
    ref = instance_ref(K8S_YAML, tmp_path)
    _, config = processed_config(ref.run_launcher_data)
    monkeypatch.setattr("dagster_k8s.launcher.load_kubernetes_config", lambda **_: None)
    launcher = K8sRunLauncher(**config, k8s_client_batch_api=object(), k8s_client_core_api=object())

    run = DagsterRun(job_name="customer_analytics_job", run_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                     tags={"dagster/partition": "2025-03"})
    context = launcher.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=None, run_launcher=launcher),
        args=["dagster", "api", "execute_run"],
        job_name="dagster-run-test",
        pod_name="dagster-run-test",
        component="run_worker",
        user_defined_k8s_config=context.run_k8s_config,
    )

    assert context.namespace == env["DAGSTER_K8S_NAMESPACE"]
    pod = job.spec.template.spec
    assert pod.service_account_name == env["DAGSTER_K8S_SERVICE_ACCOUNT"]
    [container] = pod.containers
    assert container.image == env["DAGSTER_K8S_JOB_IMAGE"]
    assert container.resources.limits == {"cpu": "2", "memory": "3Gi"}
    sources = {(s.secret_ref.name if s.secret_ref else None, s.config_map_ref.name if s.config_map_ref else None)
               for s in container.env_from}
    assert (None, "customer-analytics-env") in sources
    assert ("customer-analytics-secrets", None) in sources
    mounts = {m.mount_path: m for m in container.volume_mounts}
    assert mounts["/data/landing"].read_only is True
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["landing"].persistent_volume_claim.claim_name == "customer-analytics-landing"
    assert {"name": "DAGSTER_HOME", "value": "/opt/dagster/dagster_home"} in [
        {"name": e.name, "value": e.value} for e in container.env]


def test_run_pod_command_line_carries_no_secret(env, tmp_path):
    """The launcher passes the instance to the run pod on its command line (`get_ref()`): the
    `{env: ...}` references travel unresolved, so the password comes only from the Secret."""
    ref = instance_ref(K8S_YAML, tmp_path)
    serialized = serialize_value(ref)
    assert "DAGSTER_PG_PASSWORD" in serialized
    assert env["DAGSTER_PG_PASSWORD"] not in serialized


def test_misspelled_run_launcher_key_fails(env, tmp_path):
    text = K8S_YAML.read_text().replace("    job_namespace:", "    job_namespce:")
    assert "job_namespce" in text
    # The instance schema leaves a class's config open; the class's own schema catches the typo.
    ref = instance_ref(K8S_YAML, tmp_path, text=text)
    with pytest.raises(DagsterInvalidConfigError, match="job_namespce"):
        processed_config(ref.run_launcher_data)


@pytest.mark.parametrize("source", [ROOT_YAML, K8S_YAML], ids=["repo-root", "kubernetes"])
def test_misspelled_instance_key_fails(source, env, tmp_path):
    text = source.read_text().replace("max_concurrent_runs:", "max_concurent_runs:")
    assert "max_concurent_runs" in text
    with pytest.raises(DagsterInvalidConfigError, match="max_concurent_runs"):
        instance_ref(source, tmp_path, text=text)


def test_misspelled_storage_key_fails(env, tmp_path):
    text = K8S_YAML.read_text().replace("      db_name:", "      dbname:")
    with pytest.raises(DagsterInvalidConfigError, match="dbname"):
        instance_ref(K8S_YAML, tmp_path, text=text)


def test_missing_environment_variable_fails(env, tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_K8S_JOB_IMAGE")
    ref = instance_ref(K8S_YAML, tmp_path)
    with pytest.raises(DagsterInvalidConfigError, match="DAGSTER_K8S_JOB_IMAGE"):
        processed_config(ref.run_launcher_data)
