//! Authorization in the core: framework ownership by id, roles and OCI grants of the
//! policy file, and what operators of each role may do.

use master::policy::{OperatorAct, Policy, Refusal};
use master::{CallError, Master, MasterConfig, Millis};
use proto::{Call, CallReply, FrameworkCall, FrameworkId, OciTask, Principal, Role, TaskKind};

use crate::common::{accept, advert, drain, info, join, offers_to, res, step, task};

const POLICY: &str = r#"
[framework.f1]
oci = true

[framework.f2]
roles = ["batch"]

[operator.auditor]
submit = false
kill = false
"#;

fn secure_master() -> Master {
    let policy = Policy::parse(POLICY).unwrap();
    Master::new(
        MasterConfig {
            offer_timeout_ms: None,
            reclaim: None,
            policy,
            ..MasterConfig::default()
        },
        7,
    )
}

fn framework(name: &str) -> Principal {
    Principal::new(name, Role::Framework)
}

fn subscribe_as(
    m: &mut Master,
    caller: &Principal,
    role: &str,
    id: Option<FrameworkId>,
) -> Result<FrameworkId, CallError> {
    let mut info = info(&caller.name, role, 1.0);
    info.framework_id = id;
    let call = FrameworkCall {
        framework_id: None,
        call: Call::Subscribe { info },
    };
    match m.handle_call(Millis(0), caller, call)? {
        CallReply::Subscribed { framework_id, .. } => {
            m.handle_framework_token(Millis(0), &framework_id, true);
            Ok(framework_id)
        }
        other => panic!("{other:?}"),
    }
}

fn refusal(result: Result<impl std::fmt::Debug, CallError>) -> Refusal {
    match result {
        Err(CallError::Refused(refusal)) => refusal,
        other => panic!("not refused by the policy: {other:?}"),
    }
}

#[test]
fn a_framework_id_belongs_to_its_subscriber_and_no_one_else_may_use_it() {
    let mut m = secure_master();
    let f1 = subscribe_as(&mut m, &framework("f1"), "default", None).unwrap();
    assert_eq!(f1.owner(), "f1");
    assert!(f1.as_str().starts_with("f1."), "{f1}");
    let kill = FrameworkCall {
        framework_id: Some(f1.clone()),
        call: Call::Kill {
            task_id: "t".into(),
        },
    };
    let r = refusal(m.handle_call(Millis(0), &framework("f3"), kill));
    assert!(
        matches!(r, Refusal::NotOwner { ref owner, .. } if owner == "f1"),
        "{r}"
    );
    // Nor may another principal take the id over by subscribing with it, say after a
    // master restart.
    let r = refusal(subscribe_as(
        &mut m,
        &framework("f3"),
        "default",
        Some(f1.clone()),
    ));
    assert!(r.to_string().contains("belongs to f1"), "{r}");
    assert!(subscribe_as(&mut m, &framework("f1"), "default", Some(f1)).is_ok());
}

#[test]
fn roles_and_registration_follow_the_policy() {
    let mut m = secure_master();
    let r = refusal(subscribe_as(&mut m, &framework("f2"), "default", None));
    assert!(matches!(r, Refusal::Role { .. }), "{r}");
    assert!(subscribe_as(&mut m, &framework("f2"), "batch", None).is_ok());
    // Unlisted framework principals may take any role; agents and viewers none.
    assert!(subscribe_as(&mut m, &framework("f9"), "anything", None).is_ok());
    for role in [Role::Agent, Role::Viewer, Role::Operator, Role::Admin] {
        let r = refusal(subscribe_as(
            &mut m,
            &Principal::new("x", role),
            "default",
            None,
        ));
        assert!(matches!(r, Refusal::NotAFramework { .. }), "{r}");
    }
    // The master's own frameworks are not held to it.
    assert!(subscribe_as(&mut m, &Principal::new("master", Role::Master), "x", None).is_ok());
}

fn oci_task(id: &str) -> proto::TaskSpec {
    let mut t = task(id, res(1.0, 64.0));
    t.kind = TaskKind::Oci(OciTask {
        image: "/images/x".to_owned(),
        command: Vec::new(),
        env: Default::default(),
        host_network: false,
        capabilities: Vec::new(),
    });
    t
}

/// `name` alone on a one-agent cluster accepts its first offer with an OCI task.
fn launch_oci_as(name: &str) -> Result<CallReply, CallError> {
    let mut m = secure_master();
    join(
        &mut m,
        0,
        advert("a1", res(4.0, 4096.0), Default::default()),
    );
    let caller = framework(name);
    let id = subscribe_as(&mut m, &caller, "default", None).unwrap();
    let actions = step(&mut m, 1);
    let offers = offers_to(&actions, &id);
    let offer = offers.first().expect("an offer");
    let call = FrameworkCall {
        framework_id: Some(id.clone()),
        call: accept(&[offer], vec![oci_task("oci")]),
    };
    let result = m.handle_call(Millis(2), &caller, call);
    drain(&mut m);
    result
}

#[test]
fn oci_launches_need_the_grant() {
    let r = refusal(launch_oci_as("f9"));
    assert!(matches!(r, Refusal::Oci { .. }), "{r}");
    assert!(launch_oci_as("f1").is_ok());
}

#[test]
fn operators_do_what_their_role_and_grant_allow() {
    let policy = Policy::parse(POLICY).unwrap();
    let op = |name: &str, role| Principal::new(name, role);
    let submit = OperatorAct::Submit { oci: false };
    let oci = OperatorAct::Submit { oci: true };
    assert!(
        policy
            .check_operator(&op("v", Role::Viewer), OperatorAct::Read)
            .is_ok()
    );
    assert!(
        policy
            .check_operator(&op("v", Role::Viewer), OperatorAct::Kill)
            .is_err()
    );
    assert!(
        policy
            .check_operator(&op("o", Role::Operator), submit)
            .is_ok()
    );
    assert!(
        policy
            .check_operator(&op("o", Role::Operator), OperatorAct::Kill)
            .is_ok()
    );
    assert!(
        policy
            .check_operator(&op("o", Role::Operator), oci)
            .is_err()
    );
    assert!(
        policy
            .check_operator(&op("auditor", Role::Operator), submit)
            .is_err()
    );
    assert!(
        policy
            .check_operator(&op("auditor", Role::Operator), OperatorAct::Read)
            .is_ok()
    );
    assert!(policy.check_operator(&op("root", Role::Admin), oci).is_ok());
    assert!(
        policy
            .check_operator(&op("a1", Role::Agent), OperatorAct::Read)
            .is_err()
    );
    assert!(policy.check_upload(&op("f", Role::Framework)).is_ok());
    assert!(policy.check_upload(&op("v", Role::Viewer)).is_err());
    // An insecure cluster checks nothing.
    assert!(
        Policy::open()
            .check_operator(&op("v", Role::Viewer), oci)
            .is_ok()
    );
}

#[test]
fn a_policy_file_with_a_mistake_is_refused_by_name() {
    let e = Policy::parse("[framework.f1]\nocii = true\n").unwrap_err();
    assert!(e.to_string().contains("ocii"), "{e}");
    assert!(Policy::parse("[operators.x]\n").is_err());
    assert_eq!(Policy::parse("").unwrap(), Policy::secure_default());
}

#[test]
fn the_policy_example_of_the_readme_parses() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\nframework_default")
        .expect("the example")
        + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("its end");
    let policy = Policy::parse(&readme[start..end]).unwrap();
    assert_eq!(policy.framework["vision"].roles, ["vision", "batch"]);
    assert!(!policy.operator["auditor"].submit);
}

#[test]
fn an_agent_speaks_only_for_the_tasks_on_it() {
    use crate::common::{master, status, subscribe};
    use master::Action;
    use proto::{Event, TaskState};
    let mut m = master();
    join(
        &mut m,
        0,
        advert("a1", res(2.0, 1024.0), Default::default()),
    );
    let fw = subscribe(&mut m, 0, info("fw", "default", 1.0));
    let actions = step(&mut m, 1);
    let offers = offers_to(&actions, &fw);
    let call = FrameworkCall {
        framework_id: Some(fw.clone()),
        call: accept(&[&offers[0]], vec![task("t1", res(1.0, 64.0))]),
    };
    m.handle_call(Millis(2), &Principal::anonymous(), call)
        .unwrap();
    drain(&mut m);
    join(
        &mut m,
        3,
        advert("a2", res(2.0, 1024.0), Default::default()),
    );
    drain(&mut m);
    let updates = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::SendEvent {
                        event: Event::Update { .. },
                        ..
                    }
                )
            })
            .count()
    };
    // a2 claims a1's task ended, and invents another of fw's.
    m.handle_status(Millis(4), status("t1", &fw, "a2", TaskState::Finished, 1));
    m.handle_status(Millis(5), status("ghost", &fw, "a2", TaskState::Failed, 2));
    let actions = drain(&mut m);
    assert_eq!(updates(&actions), 0, "{actions:?}");
    assert_eq!(m.statuses_refused(), 2);
    // The invented one is acknowledged, so that a2 stops resending it.
    assert!(actions.iter().any(
        |a| matches!(a, Action::AckStatus { acks, .. } if acks[0].task_id.as_str() == "ghost")
    ));
    assert!(
        m.handle_operator_kill(Millis(6), &"t1".into()).is_ok(),
        "t1 still runs"
    );
    // a1 itself is heard.
    m.handle_status(Millis(7), status("t1", &fw, "a1", TaskState::Running, 3));
    assert_eq!(updates(&drain(&mut m)), 1);
}
