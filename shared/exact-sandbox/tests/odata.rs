//! OData rules: Accept, mandatory $filter, $select, paging with __next, the $filter language, padding, dates,
//! Me, divisions and localized errors.

use std::collections::BTreeSet;

use crate::common::*;
use exact_sandbox::{Sandbox, SandboxConfig};
use serde_json::json;

const ACCOUNTS: &str = "/api/v1/1001/crm/Accounts";

#[tokio::test]
async fn api_calls_without_accept_json_get_no_json() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, JAN).await;
    let r = api
        .http
        .get(format!(
            "{}/api/v1/1001/financial/Journals?$select=Code",
            sb.base_url()
        ))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let r = Resp::read(r).await;
    assert_eq!(r.status, 406);
    assert!(r.text.starts_with("<?xml"), "{}", r.text);
    assert!(serde_json::from_str::<serde_json::Value>(&r.text).is_err());
    assert_eq!(
        api.get("/api/v1/1001/financial/Journals", &[("$select", "Code")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn accounts_and_items_have_mandatory_filtering() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, JAN).await;
    for path in [ACCOUNTS, "/api/v1/1001/logistics/Items"] {
        let r = api.get(path, &[("$select", "ID")]).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(
            r.message().starts_with("This endpoint has mandatory filtering applied. A GET request for this endpoint must have a $filter parameter with one of the following fields in the url: "),
            "{}",
            r.message()
        );
    }
    // A filter on a field outside the list does not count.
    let r = api
        .get(
            ACCOUNTS,
            &[("$select", "ID"), ("$filter", "AddressLine1 eq 'x'")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("Name"));
    let r = api
        .get(ACCOUNTS, &[("$select", "ID"), ("$filter", "Name eq 'x'")])
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .get(
            "/api/v1/1001/logistics/Items",
            &[
                ("$select", "ID,Code,IsSalesItem,EndDate"),
                ("$filter", "Code eq 'CONSULT'"),
            ],
        )
        .await;
    assert_eq!(r.results().len(), 1);
    assert_eq!(r.results()[0]["IsSalesItem"], true);
    assert!(r.results()[0]["EndDate"].is_null());
}

#[tokio::test]
async fn collections_need_select_or_top_1() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, JAN).await;
    let r = api
        .get(
            "/api/v1/1001/financial/Journals",
            &[("$filter", "Code eq '70'")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "Please add a $select or a $top=1 statement to the query string."
    );
    let r = api
        .get(
            "/api/v1/1001/financial/Journals",
            &[("$filter", "Code eq '70'"), ("$top", "1")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.results()[0]["Type"], 20, "all fields without $select");
    let r = api
        .get(
            "/api/v1/1001/financial/Journals",
            &[("$filter", "Code eq '70'"), ("$select", "Code,Type")],
        )
        .await;
    let row = r.results()[0].as_object().unwrap().clone();
    let keys: BTreeSet<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["__metadata", "Code", "Type"]));
    assert!(
        row["__metadata"]["uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "{}/api/v1/1001/financial/Journals(guid'",
                sb.base_url()
            ))
    );
    assert_eq!(
        row["__metadata"]["type"],
        "Exact.Web.Api.Models.Financial.Journal"
    );
    let r = api
        .get(
            "/api/v1/1001/financial/Journals",
            &[("$select", "Code,Nope")],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = api
        .get(
            "/api/v1/1001/financial/Journals",
            &[("$select", "Code"), ("$frobnicate", "1")],
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn pages_of_60_follow_next_to_the_end() {
    let sb = Sandbox::start().await;
    sb.world().seed_accounts(1001, 130);
    let api = Api::new(&sb, JAN).await;
    let mut r = api
        .get(
            ACCOUNTS,
            &[("$filter", "Status eq 'C'"), ("$select", "ID,Name")],
        )
        .await;
    let mut pages = Vec::new();
    let mut ids = BTreeSet::new();
    loop {
        assert_eq!(r.status, 200, "{}", r.text);
        pages.push(r.results().len());
        for row in r.results() {
            ids.insert(row["ID"].as_str().unwrap().to_string());
        }
        let Some(next) = r.next() else { break };
        assert!(
            next.starts_with(&format!("{}{ACCOUNTS}?", sb.base_url())),
            "{next}"
        );
        assert!(next.contains("$skiptoken="), "{next}");
        r = api.get_url(&next).await;
    }
    assert_eq!(pages, vec![60, 60, 10]);
    assert_eq!(ids.len(), 130);
    assert_eq!(sb.api_calls(1001), 3);
}

#[tokio::test]
async fn top_is_honoured_across_pages() {
    let sb = Sandbox::start_with(SandboxConfig {
        page_size: 60,
        ..SandboxConfig::default()
    })
    .await;
    sb.world().seed_accounts(1001, 130);
    let api = Api::new(&sb, JAN).await;
    let r = api
        .get(
            ACCOUNTS,
            &[
                ("$filter", "Status eq 'C'"),
                ("$select", "ID"),
                ("$top", "5"),
            ],
        )
        .await;
    assert_eq!(r.results().len(), 5);
    assert!(r.next().is_none());
    let r = api
        .get(
            ACCOUNTS,
            &[
                ("$filter", "Status eq 'C'"),
                ("$select", "ID"),
                ("$top", "100"),
            ],
        )
        .await;
    assert_eq!(r.results().len(), 60);
    let second = api.get_url(&r.next().unwrap()).await;
    assert_eq!(second.results().len(), 40);
    assert!(second.next().is_none());
}

#[tokio::test]
async fn a_doubled_quote_in_a_filter_is_one_quote() {
    let sb = Sandbox::start().await;
    seed_customer(&sb, 1001, "O'Brien & Zn.", None);
    seed_customer(&sb, 1001, "OBrien & Zn.", None);
    let api = Api::new(&sb, JAN).await;
    let r = api
        .get(
            ACCOUNTS,
            &[("$filter", "Name eq 'O''Brien & Zn.'"), ("$select", "Name")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.results().len(), 1);
    assert_eq!(r.results()[0]["Name"], "O'Brien & Zn.");
    // Exact's collation: case-insensitive.
    let r = api
        .get(
            ACCOUNTS,
            &[("$filter", "Name eq 'o''brien & zn.'"), ("$select", "Name")],
        )
        .await;
    assert_eq!(r.results().len(), 1);
    let r = api
        .get(
            ACCOUNTS,
            &[("$filter", "Name eq 'O'Brien'"), ("$select", "Name")],
        )
        .await;
    assert_eq!(r.status, 400, "an undoubled quote is a syntax error");
}

#[tokio::test]
async fn type_mismatches_and_unknown_fields_are_400() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, JAN).await;
    let r = api
        .get(
            ACCOUNTS,
            &[("$filter", "Code eq 200184"), ("$select", "ID")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "Operator 'eq' incompatible with operand types 'System.String' and 'System.Int32' at position 5."
    );
    let r = api
        .get(ACCOUNTS, &[("$filter", "ID eq 'abc'"), ("$select", "ID")])
        .await;
    assert!(
        r.message().contains("'System.Guid' and 'System.String'"),
        "{}",
        r.message()
    );
    let r = api
        .get(ACCOUNTS, &[("$filter", "Nmae eq 'x'"), ("$select", "ID")])
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("Nmae"));
}

#[tokio::test]
async fn account_codes_are_18_characters_padded_and_dates_are_ms() {
    let sb = frozen().await;
    let now = sb.clock().now_ms();
    let api = Api::new(&sb, JAN).await;
    let a = api
        .post(ACCOUNTS, &json!({"Name": "Acme B.V.", "Status": "C"}))
        .await;
    let b = api
        .post(ACCOUNTS, &json!({"Name": "Beta B.V.", "Status": "C"}))
        .await;
    assert_eq!((a.status, b.status), (201, 201));
    let code_a = a.d()["Code"].as_str().unwrap();
    let code_b = b.d()["Code"].as_str().unwrap();
    assert_eq!(code_a.len(), 18);
    assert!(
        code_a.starts_with("  ") && !code_a.ends_with(' '),
        "{code_a:?}"
    );
    let (na, nb): (u64, u64) = (
        code_a.trim().parse().unwrap(),
        code_b.trim().parse().unwrap(),
    );
    assert!(nb > na, "codes increase");
    // Exact writes moments as the Amsterdam wall clock.
    assert_eq!(
        a.d()["Created"],
        format!("/Date({})/", exact_sandbox::amsterdam_wall_ms(now))
    );

    let trimmed = code_a.trim();
    let r = api
        .get(
            ACCOUNTS,
            &[
                ("$filter", &format!("Code eq '{trimmed}'")),
                ("$select", "ID"),
            ],
        )
        .await;
    assert_eq!(r.results().len(), 0, "padding is not trimmed");
    let r = api
        .get(
            ACCOUNTS,
            &[
                ("$filter", &format!("trim(Code) eq '{trimmed}'")),
                ("$select", "ID"),
            ],
        )
        .await;
    assert_eq!(r.results().len(), 1);
    let r = api
        .get(
            ACCOUNTS,
            &[
                ("$filter", &format!("Code eq '{code_a}'")),
                ("$select", "ID,Name"),
            ],
        )
        .await;
    assert_eq!(r.results()[0]["Name"], "Acme B.V.");
    let r = api
        .get(
            ACCOUNTS,
            &[
                (
                    "$filter",
                    &format!(
                        "Created ge datetime'{}'",
                        sb.clock().now().format("%Y-%m-%dT%H:%M:%S")
                    ),
                ),
                ("$select", "ID"),
            ],
        )
        .await;
    assert_eq!(r.results().len(), 2);
}

#[tokio::test]
async fn vat_codes_are_padded_and_found_with_trim() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, JAN).await;
    let path = "/api/v1/1001/vat/VATCodes";
    let sel = "ID,Code,Description,Percentage,VATTransactionType,IsBlocked";
    let r = api
        .get(path, &[("$filter", "Code eq '2'"), ("$select", sel)])
        .await;
    assert_eq!(r.results().len(), 0);
    let r = api
        .get(path, &[("$filter", "trim(Code) eq '2'"), ("$select", sel)])
        .await;
    let rows = r.results();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["Code"], "2  ");
    assert_eq!(rows[0]["Percentage"], 0.21);
    assert_eq!(rows[0]["VATTransactionType"], "S");
    let r = api
        .get(path, &[("$filter", "Code eq '2  '"), ("$select", "Code")])
        .await;
    assert_eq!(r.results().len(), 1);
}

#[tokio::test]
async fn me_divisions_and_wrong_division() {
    let sb = Sandbox::start().await;
    let jan = Api::new(&sb, JAN).await;
    let me = jan
        .get(
            "/api/v1/current/Me",
            &[(
                "$select",
                "UserID,CurrentDivision,FullName,Email,LanguageCode",
            )],
        )
        .await;
    let row = &me.results()[0];
    assert_eq!(row["CurrentDivision"], 1002);
    assert_eq!(row["FullName"], "Jan Jansen");
    assert_eq!(row["LanguageCode"], "nl-NL");
    assert_eq!(
        sb.requests().last().unwrap().division,
        Some(1002),
        "Me is charged to the current division"
    );
    assert_eq!(sb.api_calls(1002), 1);

    let r = jan
        .get("/api/v1/2001/financial/Journals", &[("$select", "Code")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.message(), "Forbidden - WrongDivision");

    let r = jan
        .get(
            "/api/v1/1001/system/Divisions",
            &[("$select", "Code,Description,Country,Current")],
        )
        .await;
    let rows = r.results();
    assert_eq!(rows.len(), 2, "only jan's divisions");
    assert_eq!(
        rows.iter()
            .map(|d| d["Code"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![1001, 1002]
    );
    assert_eq!(rows[1]["Current"], true);
    assert_eq!(rows[1]["Description"], "Jansen Holding B.V.");
    assert_eq!(rows[0]["Country"], "NL");
    let tom = Api::new(&sb, TOM).await;
    let r = tom
        .get(
            "/api/v1/3001/system/Divisions",
            &[("$select", "Code,Description,Country")],
        )
        .await;
    assert_eq!(r.results()[0]["Description"], "Smith Ltd");
}

#[tokio::test]
async fn errors_are_dutch_for_jan_and_english_for_tom() {
    let sb = Sandbox::start().await;
    let jan = Api::new(&sb, JAN).await;
    let tom = Api::new(&sb, TOM).await;
    let nl = jan
        .post(&invoices_path(1001), &json!({"Journal": "70"}))
        .await;
    let en = tom
        .post(&invoices_path(3001), &json!({"Journal": "70"}))
        .await;
    assert_eq!(nl.status, 400);
    assert_eq!(
        nl.message(),
        "Verplicht: Besteld door\r\nVerplicht: Factuurregels"
    );
    assert_eq!(
        en.message(),
        "Mandatory: Ordered by\r\nMandatory: Invoice lines"
    );
    let claire = Api::new(&sb, CLAIRE).await;
    let fr = claire
        .post("/api/v1/2001/crm/Accounts", &json!({"Status": "C"}))
        .await;
    assert_eq!(fr.message(), "Mandatory: Name", "English fallback");
    assert_eq!(fr.body["error"]["code"], "");
    assert_eq!(fr.body["error"]["message"]["lang"], "");
}

#[tokio::test]
async fn unknown_endpoints_and_keys_are_404() {
    let sb = Sandbox::start().await;
    let api = Api::new(&sb, JAN).await;
    assert_eq!(
        api.get("/api/v1/1001/crm/Nope", &[("$select", "ID")])
            .await
            .status,
        404
    );
    let r = api
        .get(
            &format!("{ACCOUNTS}(guid'00000000-0000-0000-0000-000000000001')"),
            &[("$select", "ID")],
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(api.delete(ACCOUNTS).await.status, 405);
}
