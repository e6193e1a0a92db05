//! Accounts and contacts: required fields, references, typed bodies, lookups.

use crate::common::*;
use exact_sandbox::Sandbox;
use serde_json::json;

const ACCOUNTS: &str = "/api/v1/1001/crm/Accounts";
const CONTACTS: &str = "/api/v1/1001/crm/Contacts";

#[tokio::test]
async fn creating_an_account_returns_the_full_entity() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, JAN).await;
    let r = api
        .post(
            ACCOUNTS,
            &json!({"Name": "Acme B.V.", "Status": "C", "AddressLine1": "Stationsplein 1", "City": "Utrecht"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let d = r.d();
    let id = d["ID"].as_str().unwrap();
    assert_eq!(d["Name"], "Acme B.V.");
    assert_eq!(d["City"], "Utrecht");
    assert_eq!(d["__metadata"]["type"], "Exact.Web.Api.Models.Account");
    let by_key = api
        .get(
            &format!("{ACCOUNTS}(guid'{id}')"),
            &[("$select", "ID,Name,AddressLine1")],
        )
        .await;
    assert_eq!(by_key.status, 200);
    assert_eq!(by_key.d()["AddressLine1"], "Stationsplein 1");
    assert!(
        by_key.d().get("results").is_none(),
        "by key is an object, not a list"
    );
    assert_eq!(sb.world().division(1001).unwrap().accounts.len(), 1);
}

#[tokio::test]
async fn account_bodies_are_validated() {
    let sb = Sandbox::start().await;
    let jan = Api::new(&sb, JAN).await;
    let r = jan.post(ACCOUNTS, &json!({"Status": "C"})).await;
    assert_eq!(
        (r.status, r.message()),
        (400, "Verplicht: Naam".to_string())
    );
    let r = jan
        .post(
            ACCOUNTS,
            &json!({"Name": "X", "PaymentConditionSales": "99"}),
        )
        .await;
    assert_eq!(r.message(), "Ongeldige referentie: Betalingsconditie");
    let r = jan
        .post(ACCOUNTS, &json!({"Name": "X", "Nmae": "typo"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().starts_with("Error processing request stream."),
        "{}",
        r.message()
    );
    let r = jan.post(ACCOUNTS, &json!({"Name": 42})).await;
    assert!(r.message().starts_with("Error processing request stream."));
    let r = jan
        .send(
            jan.http
                .post(format!("{}{ACCOUNTS}", sb.base_url()))
                .body("[1,2]")
                .header("Content-Type", "application/json"),
        )
        .await;
    assert!(r.message().contains("valid top-level resource object"));
    let r = jan
        .send(
            jan.http
                .post(format!("{}{ACCOUNTS}", sb.base_url()))
                .body(r#"{"Name":"X"}"#),
        )
        .await;
    assert_eq!(
        r.status, 415,
        "JSON bodies need Content-Type: application/json"
    );
    assert!(
        sb.world().division(1001).unwrap().accounts.is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn contacts_need_an_existing_account_and_a_name() {
    let sb = Sandbox::start().await;
    let (account, _) = seed_customer(&sb, 1001, "Acme B.V.", None);
    let (other, _) = seed_customer(&sb, 1001, "Other B.V.", None);
    let tom_like = Api::new(&sb, JAN).await;
    let r = tom_like.post(CONTACTS, &json!({"FirstName": "Jane"})).await;
    assert_eq!(r.message(), "Verplicht: Relatie");
    let r = tom_like
        .post(
            CONTACTS,
            &json!({"Account": "00000000-0000-0000-0000-000000000009", "FirstName": "Jane"}),
        )
        .await;
    assert_eq!(r.message(), "Ongeldige referentie: Relatie");
    let r = tom_like
        .post(
            CONTACTS,
            &json!({"Account": account.to_string(), "Email": "x@y.example"}),
        )
        .await;
    assert!(
        r.message().contains("voornaam of achternaam"),
        "{}",
        r.message()
    );

    let r = tom_like
        .post(
            CONTACTS,
            &json!({"Account": account.to_string(), "FirstName": "Jane", "LastName": "Doe", "Email": "jane@acme.example"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.d()["FullName"], "Jane Doe");
    assert_eq!(r.d()["AccountName"], "Acme B.V.");
    let filter = format!("Account eq guid'{account}' and Email eq 'JANE@acme.example'");
    let found = tom_like
        .get(CONTACTS, &[("$filter", &filter), ("$select", "ID,Email")])
        .await;
    assert_eq!(found.results().len(), 1);
    let filter = format!("Account eq guid'{other}' and Email eq 'jane@acme.example'");
    let none = tom_like
        .get(CONTACTS, &[("$filter", &filter), ("$select", "ID")])
        .await;
    assert_eq!(none.results().len(), 0);
}

#[tokio::test]
async fn seeded_code_lists_are_there() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, TOM).await;
    let items = api
        .get(
            "/api/v1/3001/logistics/Items",
            &[
                ("$filter", "Code ne 'x'"),
                ("$select", "Code,IsSalesItem,EndDate"),
            ],
        )
        .await;
    let codes: Vec<String> = items
        .results()
        .iter()
        .map(|i| i["Code"].as_str().unwrap().to_string())
        .collect();
    for c in ["CONSULT", "TRAVEL", "LICENSE", "OLDITEM"] {
        assert!(codes.contains(&c.to_string()), "{c}");
    }
    let old = items
        .results()
        .into_iter()
        .find(|i| i["Code"] == "OLDITEM")
        .unwrap();
    assert!(old["EndDate"].as_str().unwrap().starts_with("/Date("));
    let journals = api
        .get(
            "/api/v1/3001/financial/Journals",
            &[("$select", "Code,Type,IsBlocked"), ("$orderby", "Code")],
        )
        .await;
    let j: Vec<(String, i64, bool)> = journals
        .results()
        .iter()
        .map(|j| {
            (
                j["Code"].as_str().unwrap().into(),
                j["Type"].as_i64().unwrap(),
                j["IsBlocked"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        j,
        vec![
            ("20".into(), 12, false),
            ("60".into(), 22, false),
            ("70".into(), 20, false),
            ("71".into(), 20, true),
            ("72".into(), 20, false)
        ]
    );
    let pcs = api
        .get(
            "/api/v1/3001/cashflow/PaymentConditions",
            &[("$filter", "Code eq '30'"), ("$select", "Code,PaymentDays")],
        )
        .await;
    assert_eq!(pcs.results()[0]["PaymentDays"], 30);
}
