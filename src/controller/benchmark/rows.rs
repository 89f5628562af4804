//! A benchmark's rows: inline or from a ConfigMap's kit CSV, validated as a whole plan. Reads the
//! ConfigMap; changes nothing.

use coebench_plan::input::model_configs::parse_model_configs_csv;
use coebench_plan::input::validate::{UnknownCatalog, validate_plan};
use coebench_plan::{EndpointSpec, OutputOptions, Plan, Row};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};

use crate::controller::Context;
use crate::controller::run::join_errors;
use crate::crd::{CoeBenchmark, MAX_ROWS};
use crate::error::{Error, Result};

/// Why a benchmark cannot run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// PascalCase reason of `Valid=False`.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The rows of a benchmark: inline, or parsed from its ConfigMap's CSV; then the whole plan is
/// validated. `Ok(Err(..))` is an invalid benchmark; `Err` is an API failure.
pub(super) async fn resolve_rows(
    bench: &CoeBenchmark,
    namespace: &str,
    ctx: &Context,
) -> Result<std::result::Result<Vec<Row>, Invalid>> {
    let name = bench.name_any();
    let (rows, source) = match (&bench.spec.rows, &bench.spec.rows_from) {
        (Some(rows), None) => (
            rows.clone(),
            format!("CoeBenchmark {namespace}/{name}, spec.rows"),
        ),
        (None, Some(from)) => {
            let r = &from.config_map_key_ref;
            let source = format!("ConfigMap {namespace}/{} key {}", r.name, r.key);
            let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
            let found = config_maps
                .get_opt(&r.name)
                .await
                .map_err(Error::kube(format!(
                    "read ConfigMap {namespace}/{}",
                    r.name
                )))?;
            let Some(cm) = found else {
                return Ok(Err(Invalid {
                    reason: "ConfigMapNotFound",
                    message: format!(
                        "ConfigMap {namespace}/{} (spec.rowsFrom.configMapKeyRef) does not exist; create it with `kubectl create configmap {} -n {namespace} --from-file={}=model_configs.csv`",
                        r.name, r.name, r.key
                    ),
                }));
            };
            let Some(text) = cm.data.as_ref().and_then(|d| d.get(&r.key)) else {
                return Ok(Err(Invalid {
                    reason: "ConfigMapKeyNotFound",
                    message: format!(
                        "ConfigMap {namespace}/{} has no key {:?} (spec.rowsFrom.configMapKeyRef.key); keys present: {}",
                        r.name,
                        r.key,
                        cm.data
                            .as_ref()
                            .map(|d| d.keys().cloned().collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    ),
                }));
            };
            match parse_model_configs_csv(text, &source) {
                Ok(rows) => (rows, source),
                Err(errors) => {
                    return Ok(Err(Invalid {
                        reason: "InvalidRows",
                        message: join_errors(&errors.0),
                    }));
                }
            }
        }
        _ => {
            return Ok(Err(Invalid {
                reason: "InvalidSpec",
                message: "set exactly one of spec.rows and spec.rowsFrom".into(),
            }));
        }
    };
    if rows.len() > MAX_ROWS {
        return Ok(Err(Invalid {
            reason: "TooManyRows",
            message: format!(
                "{source} has {} rows, more than the {MAX_ROWS} a run may hold; split it into several benchmarks",
                rows.len()
            ),
        }));
    }
    let plan = Plan {
        endpoint: EndpointSpec {
            api: bench.spec.endpoint.api,
            url: bench.spec.endpoint.url.clone(),
            api_key_env: None,
            simulator: None,
            ca_certificate: None,
        },
        rows,
        options: bench.spec.options.clone(),
        workers: bench.spec.workers.unwrap_or(1),
        output: OutputOptions::default(),
    };
    match validate_plan(&plan, &source, &UnknownCatalog) {
        Ok(()) => Ok(Ok(plan.rows)),
        Err(errors) => Ok(Err(Invalid {
            reason: "InvalidRows",
            message: join_errors(&errors.0),
        })),
    }
}
