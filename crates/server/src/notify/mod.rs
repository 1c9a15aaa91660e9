//! Alert notifiers: webhooks (Alertmanager's webhook JSON, retries with backoff, a dead-letter
//! log that can be replayed) and Prometheus Alertmanagers (their v2 alerts API, firing alerts
//! re-sent so they stay active). [`Notifiers`] is the handle the server holds: `send` queues a
//! notification for every target without waiting, and each target has its own task, so a slow
//! or dead receiver holds back only itself.

mod alertmanager;
mod dead_letter;
mod payload;
mod retry;
pub(crate) mod routes;
mod webhook;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pulsewire_model::AlertEvent;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use alertmanager::AlertmanagerStats;
pub use dead_letter::DeadLetter;
pub use webhook::{IDEMPOTENCY_KEY, WebhookStats};

use crate::NotifyConfig;
use alertmanager::Alertmanager;
use dead_letter::DeadLetterLog;
use webhook::{Job, Webhook};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("notifier configuration: {0}")]
    Config(String),
    #[error("dead-letter log {}: {source}", path.display())]
    DeadLetter {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no webhook named {0:?}")]
    UnknownWebhook(String),
    #[error("notifier task failed: {0}")]
    Task(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Alerts to send together, as the rule engine groups them.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The tenant whose alerts these are (a notification never mixes tenants).
    pub tenant: String,
    /// Identifies the group (same tenant, same labels, same key), as Alertmanager's `groupKey`.
    pub group_key: String,
    /// The labels the alerts were grouped by.
    pub group_labels: BTreeMap<String, String>,
    /// The state changes; pending ones are not notified.
    pub alerts: Vec<AlertEvent>,
}

impl Notification {
    /// A notification of `tenant`'s dispatcher. Another tenant's group key gets the tenant in
    /// front, so two tenants' groups of the same labels stay apart at the receiver; the
    /// `default` tenant's keys are what they were before tenants.
    pub fn of_tenant(tenant: &str, n: pulsewire_analysis::alert::Notification) -> Notification {
        let group_key = if tenant == pulsewire_model::DEFAULT_TENANT {
            n.group_key
        } else {
            format!("{tenant}/{}", n.group_key)
        };
        Notification {
            tenant: tenant.to_owned(),
            group_key,
            group_labels: n.group_labels,
            alerts: n.alerts,
        }
    }
}

/// What every target has done since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyStats {
    pub webhooks: Vec<WebhookStats>,
    pub alertmanagers: Vec<AlertmanagerStats>,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Dead letters queued again (and removed from the log).
    pub queued: usize,
    /// Selected dead letters left in the log: their webhook's queue was full, or no webhook of
    /// that name is configured any more.
    pub left: usize,
}

/// The running notifiers; cheap to clone.
#[derive(Clone)]
pub struct Notifiers(Arc<Inner>);

struct Inner {
    webhooks: Vec<Arc<Webhook>>,
    alertmanagers: Vec<Arc<Alertmanager>>,
    log: Arc<DeadLetterLog>,
    external_url: String,
    /// Tells the tasks to send what they hold and stop.
    closing: CancellationToken,
    /// Tells them to stop now, dead-lettering what they still hold.
    abort: CancellationToken,
    tasks: Mutex<JoinSet<()>>,
    /// Dead-letter writes of notifications no queue could take, joined at shutdown.
    spills: Mutex<JoinSet<()>>,
    runtime: tokio::runtime::Handle,
}

impl Notifiers {
    /// Starts one task per target; the dead-letter log lives in `<data_dir>/notify/`. Fails
    /// outside a Tokio runtime.
    pub fn start(config: &NotifyConfig, data_dir: &Path) -> Result<Notifiers> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(Error::Config(problems.join("; ")));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Task("notifiers must be started within a Tokio runtime".into()))?;
        let log = Arc::new(DeadLetterLog::open(&data_dir.join("notify"))?);
        let closing = CancellationToken::new();
        let abort = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut webhooks = Vec::new();
        for cfg in &config.webhooks {
            let (hook, rx) = Webhook::new(cfg, config.queue_size)?;
            tasks.spawn(hook.clone().run(rx, log.clone(), closing.clone(), abort.clone()));
            webhooks.push(hook);
        }
        let mut alertmanagers = Vec::new();
        for cfg in &config.alertmanagers {
            let am = Alertmanager::new(cfg, &config.external_url)?;
            tasks.spawn(am.clone().run(closing.clone(), abort.clone()));
            alertmanagers.push(am);
        }
        Ok(Notifiers(Arc::new(Inner {
            webhooks,
            alertmanagers,
            log,
            external_url: config.external_url.clone(),
            closing,
            abort,
            tasks: Mutex::new(tasks),
            spills: Mutex::new(JoinSet::new()),
            runtime,
        })))
    }

    /// Queues `n` for every target without waiting. A webhook whose queue is full (or that has
    /// stopped) gets it in the dead-letter log instead, so nothing is dropped silently.
    pub fn send(&self, n: Notification) {
        let inner = &self.0;
        for hook in &inner.webhooks {
            let Some(body) = payload::webhook_body(&n, &hook.name, &inner.external_url) else {
                continue;
            };
            let job = Job {
                tenant: n.tenant.clone(),
                key: format!("{:032x}", rand::random::<u128>()),
                body: body.into(),
            };
            if let Err(job) = hook.try_enqueue(job) {
                tracing::warn!(webhook = %hook.name, "webhook queue full or stopped; notification goes to the dead-letter log");
                let (hook, log) = (hook.clone(), inner.log.clone());
                let mut spills = inner.spills.lock();
                // Reap finished writes so the set stays as small as the writes in flight.
                while spills.try_join_next().is_some() {}
                spills.spawn_blocking_on(
                    move || hook.dead_letter(&log, vec![(job, 0, "queue full".into())]),
                    &inner.runtime,
                );
            }
        }
        for am in &inner.alertmanagers {
            am.update(&n);
        }
    }

    /// Tells the Alertmanagers of alert states directly, outside grouping: the firing alerts
    /// restored at start (the dispatcher will not notify them again, and an Alertmanager not
    /// refreshed would resolve them on its own), and every resolution, silenced ones included
    /// (the dispatcher drops a silenced resolution, which would leave the Alertmanager re-sent
    /// a firing alert forever). Webhooks get neither.
    pub fn alertmanager_sync(&self, alerts: Vec<AlertEvent>) {
        if self.0.alertmanagers.is_empty() || alerts.is_empty() {
            return;
        }
        // Alerts of every tenant: each carries its `tenant` label to the Alertmanager.
        let n = Notification {
            tenant: String::new(),
            group_key: String::new(),
            group_labels: BTreeMap::new(),
            alerts,
        };
        for am in &self.0.alertmanagers {
            am.update(&n);
        }
    }

    /// Queues again every dead letter of `webhook` (every webhook if `None`) and removes them
    /// from the log. They keep their idempotency keys, so a receiver that did get one before
    /// can tell.
    pub async fn replay_dead_letters(&self, tenant: &str, webhook: Option<&str>) -> Result<ReplayReport> {
        if let Some(name) = webhook
            && !self.0.webhooks.iter().any(|h| h.name == name)
        {
            return Err(Error::UnknownWebhook(name.to_owned()));
        }
        let only = webhook.map(str::to_owned);
        let tenant = tenant.to_owned();
        let inner = self.0.clone();
        let (queued, left) = tokio::task::spawn_blocking(move || {
            inner.log.take(
                |d| d.tenant == tenant && only.as_ref().is_none_or(|n| *n == d.webhook),
                |d| {
                    inner
                        .webhooks
                        .iter()
                        .find(|h| h.name == d.webhook)
                        .is_some_and(|h| h.requeue(d))
                },
            )
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        tracing::info!(queued, left, "dead letters replayed");
        Ok(ReplayReport { queued, left })
    }

    /// Every dead letter in the log, oldest first.
    /// The dead letters of `tenant`'s notifications, oldest first.
    pub async fn dead_letters(&self, tenant: &str) -> Result<Vec<DeadLetter>> {
        let log = self.0.log.clone();
        let tenant = tenant.to_owned();
        let all = tokio::task::spawn_blocking(move || log.list())
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        Ok(all.into_iter().filter(|d| d.tenant == tenant).collect())
    }

    pub fn stats(&self) -> NotifyStats {
        NotifyStats {
            webhooks: self.0.webhooks.iter().map(|h| h.stats()).collect(),
            alertmanagers: self.0.alertmanagers.iter().map(|a| a.stats()).collect(),
        }
    }

    /// Sends what is queued, for up to `deadline`; what is still undelivered then goes to the
    /// dead-letter log (webhooks) or is left to expire (Alertmanager alerts carry an `endsAt`).
    pub async fn shutdown(&self, deadline: Duration) {
        let inner = &self.0;
        inner.closing.cancel();
        let mut tasks = std::mem::take(&mut *inner.tasks.lock());
        let flushed = tokio::time::timeout(deadline, join_all(&mut tasks)).await.is_ok();
        if !flushed {
            inner.abort.cancel();
            // Aborted tasks only write their leftovers to the log; that is quick, but a stuck
            // disk must not hold the process forever.
            if tokio::time::timeout(ABORT_GRACE, join_all(&mut tasks)).await.is_err() {
                tracing::error!(left = tasks.len(), "notifier tasks did not stop");
            }
        }
        let mut spills = std::mem::take(&mut *inner.spills.lock());
        if tokio::time::timeout(ABORT_GRACE, join_all(&mut spills)).await.is_err() {
            tracing::error!(left = spills.len(), "dead-letter writes did not finish");
        }
    }
}

/// How long aborted tasks get to write what they held to the dead-letter log.
const ABORT_GRACE: Duration = Duration::from_secs(5);

async fn join_all(set: &mut JoinSet<()>) {
    while let Some(r) = set.join_next().await {
        if let Err(e) = r {
            tracing::error!("notifier task failed: {e}");
        }
    }
}
