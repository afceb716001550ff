use super::*;
use proptest::prelude::*;

fn values(row: &Row) -> Vec<(&str, Option<&str>)> {
    row.values
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect()
}

fn refused(result: Result<Vec<Row>, ImportError>) -> String {
    match result {
        Ok(rows) => panic!("taken: {rows:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_csv_file_becomes_rows_named_by_their_lines() -> Result<(), ImportError> {
    let text = "\u{feff}id,email,note\n1,ada@example.com,\"says \"\"hi\"\", twice\"\n\n2,,\"two\nlines\"\n3,c@example.com,x\n";
    let rows = parse_csv(text.as_bytes())?;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        values(&rows[0]),
        [
            ("email", Some("ada@example.com")),
            ("id", Some("1")),
            ("note", Some("says \"hi\", twice"))
        ]
    );
    assert_eq!(rows[1].values.get("email"), Some(&None));
    assert_eq!(rows[1].values["note"].as_deref(), Some("two\nlines"));
    // A row's place is the line it starts on (blank lines count; a quoted line break too).
    let places: Vec<&str> = rows.iter().map(|r| r.place.as_str()).collect();
    assert_eq!(places, ["line 2", "line 4", "line 6"]);
    Ok(())
}

#[test]
fn bad_csv_is_refused_naming_the_line() {
    let ragged = refused(parse_csv(
        b"id,email\n1,a@example.com\n2,b@example.com,extra\n",
    ));
    assert!(ragged.starts_with("line 3: 3 field(s)"), "{ragged}");
    let short = refused(parse_csv(b"id,email\n1\n"));
    assert!(short.starts_with("line 2:"), "{short}");
    let latin1 = refused(parse_csv(b"id,name\n1,Jos\xe9\n"));
    assert!(
        latin1.starts_with("line 2:") && latin1.contains("UTF-8"),
        "{latin1}"
    );
    let unnamed = refused(parse_csv(b"id,,email\n1,2,3\n"));
    assert!(
        unnamed.starts_with("line 1:") && unnamed.contains("column 2"),
        "{unnamed}"
    );
    let twice = refused(parse_csv(b"email,Email ,email\n1,2,3\n"));
    assert!(
        twice.starts_with("line 1:") && twice.contains("named twice"),
        "{twice}"
    );
    assert!(refused(parse_csv(b"")).contains("empty"));
    assert!(refused(parse_csv(b"id,email\n")).starts_with("line 1: a header but no rows"));
    let big = vec![b'a'; MAX_CSV_BYTES + 1];
    assert!(refused(parse_csv(&big)).contains("at most 20 MiB"));
}

#[test]
fn too_many_rows_are_refused_at_the_first_one_over() {
    let mut text = String::from("id\n");
    for i in 0..=MAX_ROWS {
        text.push_str(&format!("{i}\n"));
    }
    let over = refused(parse_csv(text.as_bytes()));
    assert!(
        over.starts_with(&format!("line {}:", MAX_ROWS + 2)),
        "{over}"
    );
}

#[test]
fn json_takes_one_record_or_an_array_of_flat_ones() -> Result<(), ImportError> {
    let one = parse_json(
        br#"{"id": 7, "email": "a@example.com", "vip": true, "note": null, "tag": ""}"#,
    )?;
    assert_eq!(
        values(&one[0]),
        [
            ("email", Some("a@example.com")),
            ("id", Some("7")),
            ("note", None),
            ("tag", None),
            ("vip", Some("true"))
        ]
    );
    assert_eq!(parse_json(br#"[{"a": "1"}, {"a": "2"}]"#)?.len(), 2);
    let nested = refused(parse_json(br#"[{"a": "1"}, {"a": {"b": 1}}]"#));
    assert!(
        nested.starts_with("record 2: field \"a\" is nested"),
        "{nested}"
    );
    assert!(refused(parse_json(b"[]")).contains("empty array"));
    assert!(refused(parse_json(b"[1]")).starts_with("record 1: is not a JSON object"));
    assert!(refused(parse_json(b"{}")).starts_with("record 1: has no fields"));
    assert!(refused(parse_json(b"\"x\"")).contains("JSON object"));
    assert!(refused(parse_json(b"{\"a\": ")).contains("not JSON"));
    let many = format!("[{}]", vec![r#"{"a":"1"}"#; MAX_JSON_RECORDS + 1].join(","));
    assert!(refused(parse_json(many.as_bytes())).contains("at most 500"));
    Ok(())
}

#[test]
fn records_are_told_apart_by_id_else_by_email() -> Result<(), ImportError> {
    let rows = parse_csv(b"Client ID,Email\n c1 ,x@example.com\n,  Ada@Example.COM \n")?;
    let ids: Vec<String> = identify(rows, Entity::Contacts, "Client ID", "Email")?
        .into_iter()
        .map(|i| i.remote_id)
        .collect();
    assert_eq!(ids, ["c1", "email:ada@example.com"]);

    let neither = parse_csv(b"id,email,name\n1,,a\n,,b\n")?;
    let e = identify(neither, Entity::Contacts, "id", "email").map(|_| ());
    assert!(
        e.as_ref()
            .is_err_and(|e| e.to_string().starts_with("line 3: neither an id")),
        "{e:?}"
    );
    let twice = parse_csv(b"id,email\n1,a@example.com\n,b@example.com\n1,c@example.com\n")?;
    let e = identify(twice, Entity::Contacts, "id", "email").map(|_| ());
    assert!(
        e.as_ref().is_err_and(|e| e
            .to_string()
            .starts_with("line 4: the same record as line 2")),
        "{e:?}"
    );
    let same_email = parse_csv(b"id,email\n,a@example.com\n,A@example.com\n")?;
    assert!(identify(same_email, Entity::Contacts, "id", "email").is_err());
    let control = parse_json(br#"{"id": "a\u0007b"}"#)?;
    assert!(identify(control, Entity::Contacts, "id", "email").is_err());
    Ok(())
}

fn table() -> impl Strategy<Value = (usize, Vec<Vec<String>>)> {
    (1usize..5).prop_flat_map(|columns| {
        let cell = prop_oneof![Just(String::new()), "[a-z ,\"\r\n]{0,12}", any::<String>(),];
        (
            Just(columns),
            prop::collection::vec(prop::collection::vec(cell, columns), 1..8),
        )
    })
}

proptest! {
    /// Whatever the cells hold (quotes, commas, line breaks, any Unicode), a file a CSV
    /// writer makes of them parses back to the same values, empty cells as `None`.
    #[test]
    fn any_quoted_fields_round_trip((columns, rows) in table()) {
        let header: Vec<String> = (0..columns).map(|i| format!("col {i}")).collect();
        let mut writer = csv::WriterBuilder::new()
            .quote_style(csv::QuoteStyle::Always)
            .from_writer(Vec::new());
        writer.write_record(&header).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for row in &rows {
            writer.write_record(row).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let bytes = writer.into_inner().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = parse_csv(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.len(), rows.len());
        prop_assert_eq!(&parsed[0].place, "line 2");
        for (row, cells) in parsed.iter().zip(&rows) {
            for (name, cell) in header.iter().zip(cells) {
                let expected = (!cell.is_empty()).then(|| cell.clone());
                prop_assert_eq!(row.values.get(name), Some(&expected));
            }
        }
    }

    /// Parsing never panics, whatever the bytes: they are taken or refused.
    #[test]
    fn any_bytes_are_taken_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_csv(&bytes);
        let _ = parse_json(&bytes);
    }
}
