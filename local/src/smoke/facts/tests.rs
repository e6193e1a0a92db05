//! The judgements against observations of both kinds: each can confirm, and each can contradict.

use super::*;
use exact::probe::LinePrices;
use secrecy::SecretString;

fn err(kind: ErrorKind, status: u16, message: Option<&str>, reason: Option<&str>) -> ExactError {
    ExactError {
        kind,
        operation: "t",
        status: Some(status),
        message: message.map(str::to_owned),
        reason: reason.map(str::to_owned),
        retry_at_ms: None,
    }
}

fn failure(e: ExactError) -> Result<TokenSet, RefreshFailure> {
    Err(RefreshFailure {
        error: e,
        new_refresh_token: None,
    })
}

#[test]
fn too_early_is_confirmed_only_in_the_observed_form() {
    let observed = failure(err(
        ErrorKind::TooEarlyToRefresh,
        400,
        Some("Rate limit exceeded: access_token not expired"),
        Some("TooEarlyToRefreshTokens: Rate limit exceeded: access_token not expired"),
    ));
    assert!(too_early(&observed).is_confirmed());
    let documented = failure(err(
        ErrorKind::TooEarlyToRefresh,
        401,
        Some("Access Token not expired"),
        None,
    ));
    let v = too_early(&documented);
    assert!(v.to_string().contains("HTTP 401"), "{v}");
    assert!(v.is_contradicted());
    let grant = failure(err(ErrorKind::NeedsReconnect, 400, Some("x"), None));
    assert!(too_early(&grant).to_string().contains("needs reconnect"));
    let ok = Ok(TokenSet {
        access_token: SecretString::from("a"),
        refresh_token: SecretString::from("r"),
        expires_in: std::time::Duration::from_secs(600),
    });
    assert!(too_early(&ok).is_contradicted());
}

const NOW: i64 = 1_751_380_230_000; // 2025-07-01T14:30:30Z

fn rate(minute: i64, day: i64) -> RateLimitState {
    RateLimitState {
        minutely_reset_ms: Some(minute),
        daily_reset_ms: Some(day),
        minutely_limit: Some(60),
        daily_limit: Some(5000),
        ..RateLimitState::default()
    }
}

#[test]
fn reset_headers_must_be_epoch_ms_on_window_boundaries() {
    let (minute, day) = (1_751_380_260_000, 1_751_414_400_000);
    assert!(reset_units(Some(&rate(minute, day)), NOW).is_confirmed());
    let v = reset_units(Some(&rate(minute / 1000, day / 1000)), NOW);
    assert!(v.to_string().contains("epoch seconds"), "{v}");
    let v = reset_units(Some(&rate(29_500, day)), NOW);
    assert!(v.to_string().contains("time left"), "{v}");
    let v = reset_units(Some(&rate(minute + 1_000, day)), NOW);
    assert!(v.to_string().contains("whole minute"), "{v}");
    assert!(reset_units(Some(&RateLimitState::default()), NOW).is_contradicted());
    assert!(matches!(reset_units(None, NOW), Verdict::NotChecked(_)));
}

fn rows(codes: &[&str]) -> Result<Seen<Vec<CodeRow>>, ExactError> {
    Ok(Seen {
        value: codes
            .iter()
            .map(|c| CodeRow {
                id: mapping::ExactGuid::new_random(),
                code_as_stored: (*c).to_owned(),
            })
            .collect(),
        http_date_ms: None,
        rate: RateLimitState::default(),
        content_type: None,
    })
}

#[test]
fn trim_needs_a_match_to_confirm() {
    let v = trimmed_code(CodeList::VatCodes, "2", &rows(&["2  "]), None);
    assert_eq!(
        v,
        Verdict::Confirmed("VAT code 2 found, stored as \"2  \"".into())
    );
    let refused = Err(err(
        ErrorKind::Validation,
        400,
        Some("Unknown function 'trim' at position 0."),
        None,
    ));
    assert!(trimmed_code(CodeList::Items, "A", &refused, None).is_contradicted());
    assert!(trimmed_code(CodeList::Items, "A", &rows(&[]), Some(&rows(&["A"]))).is_contradicted());
    assert!(matches!(
        trimmed_code(CodeList::Items, "A", &rows(&[]), Some(&rows(&[]))),
        Verdict::NotChecked(_)
    ));
}

#[test]
fn read_only_rules() {
    let e400 = err(
        ErrorKind::Validation,
        400,
        Some("This endpoint has mandatory filtering applied."),
        None,
    );
    assert!(mandatory_filtering(&Err(e400.clone())).is_confirmed());
    assert!(
        mandatory_filtering(&Err(err(ErrorKind::Validation, 400, None, None))).is_contradicted()
    );
    fn seen<T>(value: T) -> Seen<T> {
        Seen {
            value,
            http_date_ms: None,
            rate: RateLimitState::default(),
            content_type: None,
        }
    }
    assert!(mandatory_filtering(&Ok(seen(1))).is_contradicted());
    assert!(subscription_filter(&Ok(Vec::new())).is_confirmed());
    assert!(subscription_filter(&Err(e400)).is_contradicted());
    let xml = Seen {
        content_type: Some("application/atom+xml;type=feed".into()),
        ..seen(())
    };
    assert!(accept_json(&Ok(xml)).is_confirmed());
    let json = Seen {
        content_type: Some("application/json".into()),
        ..seen(())
    };
    assert!(accept_json(&Ok(json)).is_contradicted());
    assert!(accept_json(&Err(err(ErrorKind::Protocol, 406, None, None))).is_confirmed());
    let host = Url::parse("https://start.exactonline.nl").unwrap();
    let page = |rows, next: Option<&str>| {
        Ok(seen(PageShape {
            rows,
            next: next.map(|n| Url::parse(n).unwrap()),
        }))
    };
    assert!(
        page_size(
            &page(
                60,
                Some("https://start.exactonline.nl/api/v1/1/crm/Accounts?$skiptoken=guid'x'")
            ),
            &host
        )
        .is_confirmed()
    );
    assert!(page_size(&page(61, None), &host).is_contradicted());
    assert!(page_size(&page(60, Some("https://elsewhere.example/x")), &host).is_contradicted());
    assert!(matches!(
        page_size(&page(3, None), &host),
        Verdict::NotChecked(_)
    ));
}

fn run(created: Option<i64>, after: Option<i64>, processed_number: Option<i64>) -> JournalRun {
    JournalRun {
        journal: "72".into(),
        created_number: created,
        processed: Ok(Processed {
            invoice_number: processed_number,
            document_creation_error: None,
            email_creation_error: None,
        }),
        after: Ok(Some(InvoiceWithLines {
            invoice_number: after,
            status: Some(50),
            lines: Vec::new(),
        })),
    }
}

#[test]
fn numbering_per_journal_setting() {
    assert!(numbering_at_entry(Some(&run(Some(7), Some(7), None))).is_confirmed());
    let v = numbering_at_entry(Some(&run(None, Some(25720001), None)));
    assert_eq!(
        v,
        Verdict::Contradicted(
            "journal 72: the create answer had InvoiceNumber null; 25720001 came at processing"
                .into()
        )
    );
    assert!(numbering_at_entry(Some(&run(Some(7), Some(8), None))).is_contradicted());
    assert!(matches!(numbering_at_entry(None), Verdict::NotChecked(_)));
    assert!(numbering_at_processing(Some(&run(None, Some(9), None))).is_confirmed());
    assert!(numbering_at_processing(Some(&run(Some(9), Some(9), None))).is_contradicted());
    assert!(numbering_at_processing(Some(&run(None, None, None))).is_contradicted());
    assert!(process_answer(&[&run(None, Some(9), None)]).is_confirmed());
    assert!(process_answer(&[&run(None, Some(9), Some(9))]).is_contradicted());
    let mut failed = run(None, Some(9), None);
    failed.processed = Ok(Processed {
        invoice_number: None,
        document_creation_error: Some("Geen layout".into()),
        email_creation_error: None,
    });
    assert!(
        process_answer(&[&failed])
            .to_string()
            .contains("Geen layout")
    );
    assert!(matches!(process_answer(&[]), Verdict::NotChecked(_)));
}

#[test]
fn dates_are_judged_against_amsterdams_offset() {
    let date = 1_751_380_260_000; // 2025-07-01T14:31:00Z, summer: +2 h
    assert!(amsterdam_dates(Some(date + 2 * 3_600_000 + 350), Some(date)).is_confirmed());
    let utc = amsterdam_dates(Some(date + 350), Some(date));
    assert!(utc.to_string().contains("UTC, not Amsterdam"), "{utc}");
    assert!(amsterdam_dates(Some(date + 3_600_000), Some(date)).is_contradicted());
    let winter = 1_736_951_460_000; // 2025-01-15T14:31:00Z: +1 h
    assert!(amsterdam_dates(Some(winter + 3_600_000), Some(winter)).is_confirmed());
    assert!(matches!(
        amsterdam_dates(None, Some(date)),
        Verdict::NotChecked(_)
    ));
}

#[test]
fn line_prices_must_all_carry_the_amount() {
    let inv = |u, n, a| InvoiceWithLines {
        invoice_number: Some(1),
        status: Some(50),
        lines: vec![LinePrices {
            quantity: Some(1.0),
            unit_price: Some(u),
            net_price: Some(n),
            amount_fc: Some(a),
            vat_code: Some("2  ".into()),
        }],
    };
    assert!(line_prices(Some(&inv(10.0, 10.0, 10.0)), 10.0).is_confirmed());
    let v = line_prices(Some(&inv(0.0, 10.0, 10.0)), 10.0);
    assert_eq!(
        v,
        Verdict::Contradicted("stored UnitPrice 0, NetPrice 10, AmountFC 10".into())
    );
    assert!(line_prices(Some(&inv(1.0, 1.0, 1.0)), 10.0).is_contradicted());
}

#[test]
fn topics_and_matching() {
    let ok = vec![
        ("SalesInvoices".to_owned(), Ok(Subscribed::AlreadyExists)),
        (
            "BankEntries".to_owned(),
            Ok(Subscribed::Created(mapping::ExactGuid::new_random())),
        ),
    ];
    assert!(topics_accepted(Some(&ok)).is_confirmed());
    let refused = vec![(
        "CashEntries".to_owned(),
        Err(err(
            ErrorKind::Validation,
            400,
            Some("Ongeldig: Topic"),
            None,
        )),
    )];
    assert!(
        topics_accepted(Some(&refused))
            .to_string()
            .contains("CashEntries HTTP 400 \"Ongeldig: Topic\"")
    );
    assert!(matches!(topics_accepted(None), Verdict::NotChecked(_)));
    let seen = Watch::Ran {
        deliveries: vec![("BankEntries".into(), 3)],
        waited_s: 60,
        unverified: 0,
    };
    assert!(matching_topic(&seen).is_confirmed());
    let none = Watch::Ran {
        deliveries: Vec::new(),
        waited_s: 60,
        unverified: 0,
    };
    assert!(matching_topic(&none).is_contradicted());
    let forged = Watch::Ran {
        deliveries: Vec::new(),
        waited_s: 60,
        unverified: 2,
    };
    assert!(matches!(matching_topic(&forged), Verdict::NotChecked(_)));
}

#[test]
fn every_fact_names_a_section_of_the_document() {
    let doc = include_str!("../../../../docs/exact-online.md");
    for f in Fact::ALL {
        let n = f.section().trim_start_matches('§');
        assert!(
            doc.lines().any(|l| l.starts_with(&format!("{n} "))),
            "{} cites §{n}, which docs/exact-online.md lacks",
            f.name()
        );
    }
}
