//! Smoke tests that prove the harness: the broker and the database are real and reachable.

use std::time::Duration;

use futures_util::StreamExt as _;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use pollwatch_model::wire;
use pollwatch_tests::{TestDatabase, within};
use sqlx::{Connection as _, PgConnection};

const STEP: Duration = Duration::from_secs(15);

#[tokio::test]
async fn broker_confirms_a_persistent_message_and_delivers_it_until_acked() -> anyhow::Result<()> {
    let broker = pollwatch_tests::broker().await?;
    let queue = broker.name("smoke");
    let connection = broker.connect().await?;

    let publisher = within(STEP, "opening a channel", connection.create_channel()).await??;
    within(STEP, "enabling confirms", publisher.confirm_select(ConfirmSelectOptions::default())).await??;
    let declare =
        publisher.queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), FieldTable::default());
    within(STEP, "declaring the queue", declare).await??;

    let body = br#"{"report_id":"smoke"}"#;
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(wire::JSON.into())
        .with_message_id("smoke-1".into());
    let publish = publisher.basic_publish(
        "".into(),
        queue.as_str().into(),
        BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
        body,
        properties,
    );
    let confirm = within(STEP, "publishing", publish).await??;
    let confirmation = within(STEP, "waiting for the broker's confirm", confirm).await??;
    assert!(confirmation.is_ack(), "the broker did not ack the publish: {confirmation:?}");
    assert!(confirmation.take_message().is_none(), "the message came back unroutable");

    let consumer_channel = within(STEP, "opening a channel", connection.create_channel()).await??;
    let consume = consumer_channel.basic_consume(
        queue.as_str().into(),
        "smoke-consumer".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    );
    let mut consumer = within(STEP, "starting a consumer", consume).await??;
    let delivery = within(STEP, "waiting for the delivery", consumer.next())
        .await?
        .expect("the consumer stream ended")?;
    assert_eq!(delivery.data, body);
    assert_eq!(delivery.properties.delivery_mode(), &Some(2));
    assert_eq!(delivery.properties.message_id().as_ref().map(|id| id.as_str()), Some("smoke-1"));
    assert!(!delivery.redelivered);
    within(STEP, "acking", delivery.ack(BasicAckOptions::default())).await??;

    // Closing the channel would requeue an unacked message; after the ack the queue stays empty.
    let cancel = consumer_channel.basic_cancel("smoke-consumer".into(), BasicCancelOptions::default());
    within(STEP, "cancelling the consumer", cancel).await??;
    within(STEP, "closing the channel", consumer_channel.close(200, "done".into())).await??;
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let queue_state = within(
        STEP,
        "inspecting the queue",
        publisher.queue_declare(queue.as_str().into(), passive, FieldTable::default()),
    )
    .await??;
    assert_eq!(queue_state.message_count(), 0, "the acked message is still queued");

    within(STEP, "closing the connection", connection.close(200, "done".into())).await??;
    Ok(())
}

#[tokio::test]
async fn each_test_gets_its_own_name_prefix() -> anyhow::Result<()> {
    let (a, b) = (pollwatch_tests::broker().await?, pollwatch_tests::broker().await?);
    assert_eq!(a.url, b.url, "one broker per test process");
    assert_ne!(a.name("reports"), b.name("reports"));
    Ok(())
}

async fn connect(database: &TestDatabase) -> anyhow::Result<PgConnection> {
    Ok(within(STEP, "connecting to PostgreSQL", PgConnection::connect(&database.url)).await??)
}

#[tokio::test]
async fn postgres_answers_a_query_in_a_fresh_database() -> anyhow::Result<()> {
    let database = pollwatch_tests::database().await?;
    let mut connection = connect(&database).await?;
    let (sum, name): (i32, String) = within(
        STEP,
        "querying",
        sqlx::query_as("SELECT 1 + 1, current_database()::text").fetch_one(&mut connection),
    )
    .await??;
    assert_eq!(sum, 2);
    assert_eq!(name, database.name);
    let tables: i64 = within(
        STEP,
        "counting tables",
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            .fetch_one(&mut connection),
    )
    .await??;
    assert_eq!(tables, 0, "a fresh database has no tables");
    Ok(())
}

#[tokio::test]
async fn test_databases_do_not_see_each_other() -> anyhow::Result<()> {
    let (first, second) = (pollwatch_tests::database().await?, pollwatch_tests::database().await?);
    assert_ne!(first.name, second.name);
    let mut a = connect(&first).await?;
    within(STEP, "creating a table", sqlx::query("CREATE TABLE only_here (id int)").execute(&mut a))
        .await??;
    let mut b = connect(&second).await?;
    let seen: i64 = within(
        STEP,
        "looking for the table",
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'only_here'")
            .fetch_one(&mut b),
    )
    .await??;
    assert_eq!(seen, 0);
    Ok(())
}
