//! Recorded ticket histories (tests/histories/*.json, written by `lifecycle.rs` with
//! `INBOX_RECORD_HISTORIES=1`) replay against the current workflow code: a change that would break
//! running tickets fails here. Covers the normal path, escalation with auto-close,
//! continue-as-new, and the Kafka AFC provider (written by `afc_kafka.rs`).

use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use workflow::ticket::TicketWorkflow;

#[tokio::test]
async fn recorded_ticket_histories_replay_against_the_current_code() -> anyhow::Result<()> {
    let dir = platform::workspace_root().join("workflow/tests/histories");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for required in [
        "normal_path",
        "escalation_and_auto_close",
        "continue_as_new",
        "afc_kafka",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "missing recorded history {required}: {names:?}"
        );
    }
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<TicketWorkflow>()?
            .build(),
    )?;
    for file in files {
        let history = WorkflowHistory::from_json(&std::fs::read(&file)?)?;
        replayer
            .replay_workflow(history)
            .await
            .map_err(|e| anyhow::anyhow!("{} does not replay: {e}", file.display()))?;
    }
    Ok(())
}
