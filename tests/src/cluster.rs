//! A RabbitMQ cluster of three nodes for tests: containers on a private Docker network of their
//! own, peer discovery by configuration (`config/rabbitmq-cluster.conf`), one Erlang cookie,
//! each node's AMQP port published on 127.0.0.1 at a port that stays the same when the node is
//! stopped and started again. A node can be SIGKILLed and started again, or cut off from the
//! others (`docker network disconnect`) and joined again.

use std::time::Duration;

use anyhow::Context as _;
use testcontainers::core::Mount;
use testcontainers::{ContainerAsync, ImageExt as _};
use testcontainers_modules::rabbitmq::RabbitMq;

use crate::containers::{self, Setup};
use crate::rabbitmq::{AMQP_PORT, DEFAULT_IMAGE, IMAGE_VAR, wait_until_accepting};
use crate::{TestBroker, init_test_logging, unique_tag, within};

/// The nodes' configuration, as the compose file's `cluster` profile mounts it too.
const CONFIG: &str = include_str!("../../config/rabbitmq-cluster.conf");

/// The Erlang cookie the nodes (and `rabbitmqctl` in their containers) share.
const COOKIE_ARGS: &str = "-setcookie pollwatch-test-cluster";

/// How long the three nodes may take to see each other once started.
const FORMED_WITHIN: Duration = Duration::from_secs(120);

/// Three RabbitMQ nodes in one cluster, removed when dropped.
pub struct TestCluster {
    /// Per node: its AMQP URL on the host (test credentials) and its container.
    nodes: Vec<(String, ContainerAsync<RabbitMq>)>,
    /// The Docker network they talk over.
    network: String,
    /// Names of this test's exchanges and queues, as [`TestBroker::name`] gives them.
    prefix: String,
    _config: tempfile::TempDir,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster").field("network", &self.network).field("urls", &self.urls()).finish()
    }
}

impl TestCluster {
    /// Starts three nodes and waits until each runs, and all three see each other.
    pub async fn start() -> anyhow::Result<Self> {
        init_test_logging();
        let tag = unique_tag();
        let network = format!("pollwatch-cluster-{tag}");
        let config = tempfile::tempdir()?;
        let path = config.path().join("rabbitmq.conf");
        std::fs::write(&path, CONFIG)?;
        // Read by the node's own user, whoever owns the file.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        let (name, image_tag) = containers::image(IMAGE_VAR, DEFAULT_IMAGE);
        let node = |i: usize| {
            let request = RabbitMq::default()
                .with_name(name.clone())
                .with_tag(image_tag.clone())
                .with_network(network.clone())
                .with_container_name(format!("{network}-{i}"))
                .with_hostname(format!("rabbitmq-{i}"))
                .with_mount(Mount::bind_mount(path.display().to_string(), "/etc/rabbitmq/rabbitmq.conf"))
                .with_env_var("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", COOKIE_ARGS)
                .with_env_var("RABBITMQ_CTL_ERL_ARGS", COOKIE_ARGS);
            let setup =
                Setup { ports: vec![AMQP_PORT], stable_ports: true, volumes: vec!["/var/lib/rabbitmq"] };
            containers::start(request, setup)
        };
        let (one, two, three) = tokio::try_join!(node(1), node(2), node(3))?;
        let mut nodes = Vec::new();
        for container in [one, two, three] {
            let port = containers::host_port(&container, AMQP_PORT).await?;
            let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
            wait_until_accepting(&url, Duration::from_secs(60)).await?;
            nodes.push((url, container));
        }
        let cluster = Self { nodes, network, prefix: format!("t-{tag}"), _config: config };
        cluster.until_running(3).await?;
        Ok(cluster)
    }

    /// Every node's AMQP URL, in node order, as `amqp.url` lists them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|(url, _)| url.clone()).collect()
    }

    /// Node `i` (from 0) as a broker of this test's names.
    pub fn broker(&self, i: usize) -> TestBroker {
        TestBroker { url: self.nodes[i].0.clone(), management: None, prefix: self.prefix.clone() }
    }

    /// `rabbitmqctl args` on node `i`; its standard output.
    pub async fn rabbitmqctl(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let command: Vec<&str> = std::iter::once("rabbitmqctl").chain(args.iter().copied()).collect();
        containers::exec(&self.nodes[i].1, &command).await
    }

    /// Waits until a node sees `n` nodes of the cluster running.
    pub async fn until_running(&self, n: usize) -> anyhow::Result<()> {
        let running = n.to_string();
        within(FORMED_WITHIN, "the cluster's nodes seeing each other", async {
            for (i, _) in self.nodes.iter().enumerate() {
                if self.rabbitmqctl(i, &["await_online_nodes", &running, "--timeout", "110"]).await.is_ok() {
                    return anyhow::Ok(());
                }
            }
            anyhow::bail!("no node saw {n} running")
        })
        .await?
    }

    /// The node (from 0) whose member leads quorum queue `queue`.
    pub async fn leader(&self, queue: &str) -> anyhow::Result<usize> {
        for (i, _) in self.nodes.iter().enumerate() {
            let Ok(listed) = self
                .rabbitmqctl(i, &["list_queues", "name", "leader", "--quiet", "--no-table-headers"])
                .await
            else {
                continue;
            };
            let leader = listed.lines().find_map(|line| {
                let (name, leader) = line.split_once('\t')?;
                (name.trim() == queue).then(|| leader.trim().to_owned())
            });
            if let Some(leader) = leader {
                let node = (1..=self.nodes.len()).find(|k| leader == format!("rabbit@rabbitmq-{k}"));
                return node
                    .map(|k| k - 1)
                    .with_context(|| format!("leader `{leader}` is not a node of the cluster"));
            }
        }
        anyhow::bail!("no node lists queue `{queue}`")
    }

    /// SIGKILLs node `i`.
    pub async fn kill(&self, i: usize) -> anyhow::Result<()> {
        containers::stop_with(&self.nodes[i].1, "SIGKILL").await
    }

    /// Starts node `i` again, on the same port, and waits until the cluster has all its nodes.
    pub async fn start_again(&self, i: usize) -> anyhow::Result<()> {
        containers::start_again(&self.nodes[i].1).await?;
        wait_until_accepting(&self.nodes[i].0, Duration::from_secs(120)).await?;
        self.until_running(self.nodes.len()).await
    }

    /// Cuts node `i` off the cluster's network: the others no longer reach it (its published
    /// port stays reachable from the host).
    pub async fn disconnect(&self, i: usize) -> anyhow::Result<()> {
        containers::disconnect(&self.nodes[i].1, &self.network).await
    }

    /// Joins node `i` to the cluster's network again, under its host name.
    pub async fn reconnect(&self, i: usize) -> anyhow::Result<()> {
        containers::reconnect(&self.nodes[i].1, &self.network, &format!("rabbitmq-{}", i + 1)).await
    }
}
