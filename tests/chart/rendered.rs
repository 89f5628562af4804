//! The rendered chart, case by case: the operator Deployment runs restricted with probes and
//! flags the operator accepts, the CRDs are those of `crds/`, the simulator, monitors,
//! dashboards and runner ServiceAccounts are what the values ask for.

use clap::Parser;
use coebench_operator::cli::Cli;
use coebench_operator::crd::{LABEL_MANAGED_BY, MANAGED_BY};
use coebench_operator::resources::job::{RUNNER_UID, default_runner_image};
use coebench_simulator::SimulatorConfig;
use serde_json::{Value, json};

use super::*;

/// The containers of a Deployment's Pod.
fn containers(deployment: &Value) -> &Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The Pod Security Standard "restricted" settings, on the Pod or the container.
fn assert_restricted(case: &str, deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    let what = format!("{case}: {}", deployment["metadata"]["name"]);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
    assert_eq!(pod["securityContext"]["runAsUser"], RUNNER_UID, "{what}");
    for c in containers(deployment) {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(sc["runAsNonRoot"], true, "{what}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        assert!(
            c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object(),
            "{what}: set resource requests and limits"
        );
    }
}

fn probe(container: &Value, kind: &str) -> (String, Value) {
    let get = &container[kind]["httpGet"];
    (
        get["path"].as_str().unwrap_or("").to_string(),
        get["port"].clone(),
    )
}

#[test]
fn every_case_runs_a_restricted_operator_with_probes_and_flags_it_accepts() {
    let rendered = render();
    for (name, case) in &rendered.cases {
        let deployment = case.get("Deployment", &rendered.release);
        assert_restricted(name, deployment);
        let container = &containers(deployment)[0];
        let args = args(container);
        let cli = Cli::try_parse_from(
            std::iter::once("coebench-operator".to_string()).chain(args.iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("{name}: the operator refuses its chart flags {args:?}: {e}"));

        // Probes on the HTTP server's port.
        assert_eq!(cli.http_addr.port(), 8080, "{name}");
        assert_eq!(container["ports"][0]["containerPort"], 8080, "{name}");
        assert_eq!(
            probe(container, "readinessProbe"),
            ("/readyz".into(), json!("http"))
        );
        assert_eq!(
            probe(container, "livenessProbe"),
            ("/healthz".into(), json!("http"))
        );

        // The downward API gives the replica's name and namespace.
        for (var, field) in [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ] {
            let env = container["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == var)
                .unwrap_or_else(|| panic!("{name}: no {var}"));
            assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], field, "{name}");
        }

        // Leader election exactly when more than one replica may run.
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap();
        assert_eq!(
            cli.leader_elect,
            replicas > 1,
            "{name}: --leader-elect with {replicas} replicas"
        );
        let strategy = &deployment["spec"]["strategy"]["type"];
        assert_eq!(
            strategy,
            if cli.leader_elect {
                "RollingUpdate"
            } else {
                "Recreate"
            },
            "{name}: without leader election two operators must never overlap"
        );

        // Watch scope and runner defaults come from the values.
        let watch = case.values["watchNamespace"].as_str();
        assert_eq!(cli.namespace.as_deref(), watch, "{name}");
        let settings = cli.settings();
        let resources = case.values["runner"]["resources"].clone();
        let expected = if resources.is_null() {
            json!({"requests": {"cpu": "500m", "memory": "512Mi"}})
        } else {
            resources
        };
        assert_eq!(
            serde_json::to_value(&settings.job.runner_resources).unwrap(),
            expected,
            "{name}"
        );
        if case.values["runner"]["image"].is_null() {
            assert_eq!(settings.job.runner_image, default_runner_image(), "{name}");
        }
    }
}

#[test]
fn the_defaults_deploy_this_version_of_the_image() {
    let chart: Value = serde_saphyr::from_str(&read("charts/coebench/Chart.yaml")).unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml's appVersion must be the workspace version"
    );
    let rendered = render();
    let deployment = rendered.cases["default"].get("Deployment", &rendered.release);
    assert_eq!(
        containers(deployment)[0]["image"],
        default_runner_image(),
        "the default image is the one the operator's --runner-image defaults to"
    );
}

/// A document of a YAML file as JSON, with the same number types as the rendered objects.
fn crd_file(relative: &str) -> Value {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&read(relative)).unwrap();
    docs.into_iter().find(|d| !d.is_null()).unwrap()
}

#[test]
fn the_charts_crds_are_those_of_crds_with_the_keep_policy() {
    let rendered = render();
    let crds: Vec<&Value> = rendered.cases["default"]
        .of_kind("CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), 2, "installCRDs defaults to true");
    for file in ["crds/coebenchmarks.yaml", "crds/coebenchmarkruns.yaml"] {
        let expected = crd_file(file);
        let mut crd = (*crds
            .iter()
            .find(|c| c["metadata"]["name"] == expected["metadata"]["name"])
            .unwrap_or_else(|| panic!("the chart lacks the CRD of {file}")))
        .clone();
        let metadata = crd["metadata"].as_object_mut().unwrap();
        let annotations = metadata.remove("annotations").unwrap_or_default();
        assert_eq!(
            annotations["helm.sh/resource-policy"], "keep",
            "uninstalling must not delete the CRDs (and every benchmark with them)"
        );
        assert_eq!(
            metadata.remove("labels").unwrap()["app.kubernetes.io/managed-by"],
            "Helm"
        );
        // Compare through the same parser: the rendered object came from Python's YAML.
        let expected: Value =
            serde_json::from_str(&serde_json::to_string(&expected).unwrap()).unwrap();
        assert!(
            crd == expected,
            "the chart's CRD differs from {file}: run `cargo run --bin crdgen` and commit"
        );
    }
    assert_eq!(
        rendered.cases["no-crds"]
            .of_kind("CustomResourceDefinition")
            .count(),
        0,
        "installCRDs: false renders no CRD"
    );
}

#[test]
fn the_simulator_is_restricted_probed_configured_and_where_the_example_expects_it() {
    let rendered = render();
    assert!(
        !rendered.cases["default"]
            .names()
            .iter()
            .any(|n| n.contains("simulator")),
        "the simulator is off by default"
    );
    let case = &rendered.cases["demo"];
    let name = format!("{}-simulator", rendered.release);
    let deployment = case.get("Deployment", &name);
    assert_restricted("demo", deployment);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    let container = &containers(deployment)[0];
    assert_eq!(container["command"], json!(["coebench"]));
    let args = args(container);
    assert_eq!(
        args,
        [
            "simulate",
            "--listen=0.0.0.0:8080",
            "--config=/etc/coebench-simulator/sim.yaml",
            "--seed=7"
        ]
    );
    for kind in ["readinessProbe", "livenessProbe"] {
        assert_eq!(probe(container, kind), ("/v1/models".into(), json!("http")));
    }
    let config = case.get("ConfigMap", &name)["data"]["sim.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    SimulatorConfig::from_yaml_str(&config, "ci/demo-values.yaml simulator.config")
        .unwrap_or_else(|e| panic!("the simulator would refuse its config: {e}"));

    let service = case.get("Service", &name);
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the simulator Service selects its Pods");
    }
    let port = service["spec"]["ports"][0]["port"].as_i64().unwrap();
    let url = format!("http://{name}.{}.svc:{port}/v1", rendered.namespace);
    assert!(
        read("examples/benchmark-simulator.yaml").contains(&format!("url: {url}\n")),
        "examples/benchmark-simulator.yaml must point at {url}"
    );
}

#[test]
fn monitors_select_the_operator_service_and_the_runner_pods() {
    let rendered = render();
    let default = &rendered.cases["default"];
    assert_eq!(
        default.of_kind("ServiceMonitor").count() + default.of_kind("PodMonitor").count(),
        0
    );
    let case = &rendered.cases["demo"];
    let service = case.get("Service", &rendered.release);
    let monitor = case.get("ServiceMonitor", &rendered.release);
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][k], v,
            "the ServiceMonitor selects the Service"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");

    let pods = case.get("PodMonitor", &format!("{}-runners", rendered.release));
    assert_eq!(
        pods["spec"]["selector"]["matchLabels"],
        json!({(LABEL_MANAGED_BY): MANAGED_BY, "app.kubernetes.io/name": "coebench-runner"}),
        "the PodMonitor selects the labels the operator puts on runner Pods"
    );
    assert_eq!(pods["spec"]["namespaceSelector"], json!({"any": true}));
}

#[test]
fn the_dashboards_config_map_holds_every_dashboard_the_chart_ships() {
    let mut shipped: Vec<(String, String)> =
        std::fs::read_dir(repo().join("charts/coebench/dashboards"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p.file_name().unwrap().to_string_lossy().into_owned(), text)
            })
            .collect();
    shipped.sort();
    let rendered = render();
    let case = &rendered.cases["demo"];
    let maps: Vec<&Value> = case
        .of_kind("ConfigMap")
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    if shipped.is_empty() {
        assert!(
            maps.is_empty(),
            "no dashboard shipped, so no dashboards ConfigMap"
        );
        assert!(case.notes.contains("ships no dashboard"), "{}", case.notes);
        return;
    }
    assert_eq!(maps.len(), 1, "one ConfigMap holds the dashboards");
    let data = maps[0]["data"].as_object().unwrap();
    assert_eq!(
        maps[0]["metadata"]["annotations"]["grafana_folder"],
        "coebench"
    );
    for (file, text) in &shipped {
        let held = data[file]
            .as_str()
            .unwrap_or_else(|| panic!("{file} is not in the ConfigMap"));
        let held: Value = serde_json::from_str(held).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(held, serde_json::from_str::<Value>(text).unwrap(), "{file}");
    }
    assert_eq!(data.len(), shipped.len());
}

#[test]
fn runner_service_accounts_have_no_token_and_are_the_runner_default() {
    let rendered = render();
    for (name, expected) in [
        ("default", vec![]),
        ("namespaced", vec!["team-a"]),
        ("ha", vec!["bench-a", "bench-b"]),
        ("no-crds", vec![]),
    ] {
        let case = &rendered.cases[name];
        let accounts: Vec<&Value> = case
            .of_kind("ServiceAccount")
            .filter(|a| a["metadata"]["labels"]["app.kubernetes.io/component"] == "runner")
            .collect();
        let namespaces: Vec<&str> = accounts
            .iter()
            .map(|a| a["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(namespaces, expected, "{name}");
        for account in &accounts {
            assert_eq!(account["metadata"]["name"], "coebench-runner", "{name}");
            assert_eq!(account["automountServiceAccountToken"], false, "{name}");
        }
        let flag = args(&containers(case.get("Deployment", &rendered.release))[0])
            .into_iter()
            .find(|a| a.starts_with("--runner-service-account"));
        assert_eq!(
            flag.is_some(),
            !expected.is_empty(),
            "{name}: the runner default is the chart's ServiceAccount exactly where it exists"
        );
        // No binding gives runner Pods any API rights.
        for binding in case
            .of_kind("RoleBinding")
            .chain(case.of_kind("ClusterRoleBinding"))
        {
            for subject in binding["subjects"].as_array().unwrap() {
                assert_ne!(subject["name"], "coebench-runner", "{name}");
            }
        }
    }
}

#[test]
fn the_tokenizer_cache_claim_value_becomes_the_runner_default() {
    let rendered = render();
    for (name, expected) in [
        ("default", None),
        (
            "namespaced",
            Some("--runner-tokenizer-cache-claim=hf-tokenizers"),
        ),
    ] {
        let case = &rendered.cases[name];
        let flag = args(&containers(case.get("Deployment", &rendered.release))[0])
            .into_iter()
            .find(|a| a.starts_with("--runner-tokenizer-cache-claim"));
        assert_eq!(flag.as_deref(), expected, "{name}");
    }
}

#[test]
fn notes_say_how_to_run_and_watch_a_first_benchmark() {
    let rendered = render();
    for (name, case) in &rendered.cases {
        assert!(
            case.notes.contains("kubectl get coeb,coebr"),
            "{name}: {}",
            case.notes
        );
        assert!(case.notes.contains("docs/troubleshooting.md"), "{name}");
        let simulator = case.values["simulator"]["enabled"] == true;
        assert_eq!(
            case.notes.contains("examples/benchmark-simulator.yaml"),
            simulator,
            "{name}: the simulator example is offered when the simulator runs"
        );
    }
    assert!(rendered.cases["namespaced"].notes.contains("-n team-a"));
}
