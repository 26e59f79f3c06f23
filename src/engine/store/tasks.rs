//! The task queue: a durable list of work items for agents, in `<state>/tasks.json`, changed
//! only through atomic writes (SPEC section 4).
//!
//! Tasks come from `orch task add`, from lines agents append to their `ORCH_TASKS_INBOX`
//! (taken in after each phase; a bad line is logged and skipped, never fatal) and from orch
//! itself (a reverted task comes back at priority 1 with the failing test output). An agent
//! with `when: "tasks"` takes one task per round: the highest priority (1 first), oldest first.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::store::state::{read_json, write_json, Layout};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Running,
    Done,
    Split,
    Dropped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: String,
    pub agent: String,
    pub priority: u8,
    pub title: String,
    #[serde(default)]
    pub body: String,
    pub status: TaskStatus,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub created_round: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    #[serde(default)]
    next_id: u32,
    #[serde(default)]
    pub tasks: Vec<Task>,
}

/// One line of an agent's inbox.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InboxLine {
    title: String,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    body: String,
    #[serde(default)]
    priority: Option<u8>,
    #[serde(default)]
    parent: Option<String>,
}

impl Queue {
    pub fn path(layout: &Layout) -> std::path::PathBuf {
        layout.dir.join("tasks.json")
    }

    pub fn load(layout: &Layout) -> Result<Queue> {
        Ok(read_json(&Self::path(layout))?.unwrap_or_default())
    }

    pub fn save(&self, layout: &Layout) -> Result<()> {
        write_json(&Self::path(layout), self)
    }

    pub fn add(
        &mut self,
        agent: &str,
        priority: u8,
        title: &str,
        body: &str,
        parent: Option<String>,
        round: u32,
    ) -> String {
        self.next_id += 1;
        let id = format!("t-{}", self.next_id);
        self.tasks.push(Task {
            id: id.clone(),
            agent: agent.to_string(),
            priority: priority.clamp(1, 3),
            title: title.to_string(),
            body: body.to_string(),
            status: TaskStatus::Pending,
            attempts: 0,
            parent,
            created_round: round,
        });
        id
    }

    pub fn get(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Task> {
        self.tasks.iter_mut().find(|t| t.id == id)
    }

    /// The task an agent takes next: pending, highest priority, oldest first.
    pub fn next_for(&self, agent: &str) -> Option<&Task> {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.agent == agent && t.status == TaskStatus::Pending)
            .min_by_key(|(i, t)| (t.priority, *i))
            .map(|(_, t)| t)
    }

    pub fn has_pending(&self, agent: &str) -> bool {
        self.next_for(agent).is_some()
    }

    /// Sets a task's status; an unknown id is a usage error naming it.
    pub fn set_status(&mut self, id: &str, status: TaskStatus) -> Result<()> {
        let t = self
            .get_mut(id)
            .ok_or_else(|| Error::Usage(format!("no task {id} (see `orch task list --all`)")))?;
        t.status = status;
        Ok(())
    }

    /// Puts a task back in the queue after a failed, timed-out or reverted run.
    pub fn requeue(&mut self, id: &str, priority: Option<u8>, note: Option<&str>) {
        if let Some(t) = self.get_mut(id) {
            t.status = TaskStatus::Pending;
            if let Some(p) = priority {
                t.priority = p;
            }
            if let Some(n) = note {
                if !t.body.is_empty() {
                    t.body.push_str("\n\n");
                }
                t.body.push_str(n);
            }
        }
    }

    /// Takes in the lines an agent appended to its inbox and removes the file. Returns one
    /// warning per line that was skipped.
    pub fn take_inbox(
        &mut self,
        inbox: &Path,
        from_agent: &str,
        known_agents: &[&str],
        round: u32,
    ) -> Vec<String> {
        let text = match std::fs::read(inbox) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => return Vec::new(),
        };
        let _ = std::fs::remove_file(inbox);
        let mut warnings = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed: std::result::Result<InboxLine, _> = serde_json::from_str(line);
            let where_ = format!("task inbox of {from_agent}, line {}", n + 1);
            match parsed {
                Err(e) => warnings.push(format!("{where_}: skipped, not a task ({e})")),
                Ok(l) if l.title.trim().is_empty() => {
                    warnings.push(format!("{where_}: skipped, the title is empty"))
                }
                Ok(l) => {
                    let agent = l.agent.unwrap_or_else(|| from_agent.to_string());
                    if !known_agents.contains(&agent.as_str()) {
                        warnings.push(format!("{where_}: skipped, no agent named {agent:?}"));
                        continue;
                    }
                    if let Some(p) = &l.parent {
                        if self.get(p).is_none() {
                            warnings.push(format!(
                                "{where_}: parent {p} does not exist; kept without it"
                            ));
                        }
                    }
                    let parent = l.parent.filter(|p| self.get(p).is_some());
                    self.add(
                        &agent,
                        l.priority.unwrap_or(2),
                        l.title.trim(),
                        &l.body,
                        parent,
                        round,
                    );
                }
            }
        }
        warnings
    }

    /// Tasks to list: pending and running ones, or all with `all`.
    pub fn visible(&self, all: bool) -> Vec<&Task> {
        self.tasks
            .iter()
            .filter(|t| all || matches!(t.status, TaskStatus::Pending | TaskStatus::Running))
            .collect()
    }

    pub fn pending_count(&self, agent: &str) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.agent == agent && t.status == TaskStatus::Pending)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_priority_then_oldest_first() {
        let mut q = Queue::default();
        q.add("a", 2, "old p2", "", None, 1);
        q.add("a", 3, "p3", "", None, 1);
        let p1 = q.add("a", 1, "new p1", "", None, 2);
        q.add("b", 1, "other agent", "", None, 1);
        assert_eq!(q.next_for("a").unwrap().id, p1);
        q.set_status(&p1, TaskStatus::Done).unwrap();
        assert_eq!(q.next_for("a").unwrap().title, "old p2");
    }

    #[test]
    fn inbox_lines_are_validated_one_by_one() {
        let d = tempfile::tempdir().unwrap();
        let inbox = d.path().join("inbox.jsonl");
        std::fs::write(
            &inbox,
            "{\"title\":\"fix it\",\"priority\":1}\nnot json\n{\"title\":\"x\",\"agent\":\"ghost\"}\n{\"title\":\"for b\",\"agent\":\"b\"}\n",
        )
        .unwrap();
        let mut q = Queue::default();
        let w = q.take_inbox(&inbox, "a", &["a", "b"], 3);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(q.tasks.len(), 2);
        assert_eq!(q.tasks[0].agent, "a");
        assert_eq!(q.tasks[0].priority, 1);
        assert_eq!(q.tasks[1].agent, "b");
        assert!(!inbox.exists());
    }

    #[test]
    fn requeue_appends_the_note_and_raises_priority() {
        let mut q = Queue::default();
        let id = q.add("a", 3, "t", "body", None, 1);
        q.set_status(&id, TaskStatus::Running).unwrap();
        q.requeue(&id, Some(1), Some("tests failed: x"));
        let t = q.get(&id).unwrap();
        assert_eq!((t.status, t.priority), (TaskStatus::Pending, 1));
        assert!(t.body.ends_with("tests failed: x"));
    }
}
