//! Who usage is billed to, for the store tests of request logs and spend: a customer, two
//! teams, three keys and a user with a personal key.

use serde_json::json;
use tollgate_control_plane::Store;
use tollgate_control_plane::identity::{GroupMappings, Profile, Role};
use tollgate_control_plane::model::{
    AuditEvent, CustomerRecord, TeamRecord, VirtualKeyRecord, now,
};
use uuid::Uuid;

pub fn event(action: &str) -> AuditEvent {
    AuditEvent {
        actor: "test".into(),
        action: action.into(),
        target: "t".into(),
        details: json!({}),
    }
}

pub fn vk(
    name: &str,
    fill: u8,
    team_id: Option<Uuid>,
    customer_id: Option<Uuid>,
) -> VirtualKeyRecord {
    let t = now();
    VirtualKeyRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        description: None,
        key_sha256: [fill; 32],
        value_prefix: "sk-tg-AbCd".into(),
        providers: Vec::new(),
        active: true,
        team_id,
        customer_id,
        user_id: None,
        governance: Default::default(),
        created_at: t,
        updated_at: t,
    }
}

pub struct Owners {
    /// `key-eng` (team eng), `key-ml` (team ml), `key-acme` (customer acme's own).
    pub keys: Vec<Uuid>,
    /// eng, ml.
    pub teams: Vec<Uuid>,
    /// acme.
    pub customer: Uuid,
    /// alice@example.com, in no team.
    pub user: Uuid,
    /// Alice's personal key.
    pub personal: Uuid,
}

/// Creates the owners in `store`; team eng belongs to customer acme when `eng_in_acme`.
pub async fn owners(store: &dyn Store, eng_in_acme: bool) -> Owners {
    let t = now();
    let customer = CustomerRecord {
        id: Uuid::new_v4(),
        name: "acme".into(),
        limits: Default::default(),
        created_at: t,
        updated_at: t,
    };
    store
        .create_customer(&customer, &event("customer.create"))
        .await
        .unwrap();
    let mut teams = Vec::new();
    for (name, cust) in [("eng", eng_in_acme.then_some(customer.id)), ("ml", None)] {
        let team = TeamRecord {
            id: Uuid::new_v4(),
            name: name.into(),
            customer_id: cust,
            limits: Default::default(),
            member_key_limits: None,
            content_logging: None,
            mcp_tools: None,
            created_at: t,
            updated_at: t,
        };
        store
            .create_team(&team, &event("team.create"))
            .await
            .unwrap();
        teams.push(team.id);
    }
    let keys = [
        vk("key-eng", 1, Some(teams[0]), None),
        vk("key-ml", 2, Some(teams[1]), None),
        vk("key-acme", 3, None, Some(customer.id)),
    ];
    for k in &keys {
        store
            .create_virtual_key(k, &event("virtual_key.create"))
            .await
            .unwrap();
    }
    // A user with a personal key (no team: no group mapping).
    let mappings = GroupMappings {
        teams: Vec::new(),
        roles: Vec::new(),
        default_role: Role::Member,
        allowed_groups: Vec::new(),
    };
    let alice = store
        .provision_user(
            &Profile {
                issuer: Some("https://idp.example".into()),
                subject: Some("alice".into()),
                user_name: "alice@example.com".into(),
                email: Some("alice@example.com".into()),
                display_name: None,
                groups: None,
            },
            &mappings,
            &|user, generation| format!("sk-tg-test-{user}-{generation}"),
            &event("user.login"),
        )
        .await
        .unwrap();
    Owners {
        keys: keys.iter().map(|k| k.id).collect(),
        teams,
        customer: customer.id,
        user: alice.user.id,
        personal: alice.personal_key_id.unwrap(),
    }
}
