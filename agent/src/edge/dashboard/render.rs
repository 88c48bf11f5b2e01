//! The page model as HTML, through askama: the template
//! (`agent/templates/dashboard.html`) is compiled into the binary and
//! checked against the model's types at build time, and, being `.html`,
//! escapes every value it prints (names, aliases, channel URLs and owners
//! are whatever the records hold: untrusted).

use super::model::Page;
use askama::Template;

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Html<'a> {
    page: &'a Page,
}

/// The whole document.
pub fn render(page: &Page) -> Result<String, askama::Error> {
    Html { page }.render()
}

#[cfg(test)]
mod tests {
    use super::super::model::{Link, Row, Tone};
    use super::*;

    fn row(name: &str, channel: &str) -> Row {
        Row {
            name: Link {
                text: name.into(),
                href: format!("https://{name}.dev.test/"),
            },
            owner: "alice".into(),
            state: "running".into(),
            state_tone: Tone::Good,
            aliases: vec![Link {
                text: format!("www.{name}.dev.test"),
                href: format!("https://www.{name}.dev.test/"),
            }],
            certificate: "valid".into(),
            certificate_detail: "until 2026-04-05 12:00 UTC (in 90 days)".into(),
            certificate_tone: Tone::Good,
            last_deploy: "2026-01-05 09:00 UTC (3 hours ago)".into(),
            cleanup: "2026-01-12 09:00 UTC (in 6 days 21 hours)".into(),
            cleanup_tone: Tone::Good,
            channel: channel.into(),
        }
    }

    fn page(rows: Vec<Row>) -> Page {
        Page {
            domain: "dev.test".into(),
            as_of: "2026-01-05 12:00 UTC".into(),
            summary: "1 enabled container, 1 running".into(),
            rows,
        }
    }

    #[test]
    fn the_page_shows_every_field_readable_on_a_phone_and_without_scripts() {
        let html = render(&page(vec![row("web01", "https://example.org/c.tar.xz")])).unwrap();
        for want in [
            r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
            "<title>devhost · dev.test</title>",
            "1 enabled container, 1 running · as of 2026-01-05 12:00 UTC",
            r#"<a href="https://web01.dev.test/">web01</a> <span class="badge good">running</span>"#,
            "<dt>Owner</dt><dd>alice</dd>",
            r#"<li><a href="https://www.web01.dev.test/">www.web01.dev.test</a></li>"#,
            r#"<span class="good">valid</span> <span class="detail">until 2026-04-05 12:00 UTC (in 90 days)</span>"#,
            "<dt>Last deploy</dt><dd>2026-01-05 09:00 UTC (3 hours ago)</dd>",
            r#"<dd class="good">2026-01-12 09:00 UTC (in 6 days 21 hours)</dd>"#,
            "<code>https://example.org/c.tar.xz</code>",
        ] {
            assert!(html.contains(want), "{want:?} missing in:\n{html}");
        }
        assert!(!html.contains("<script"), "no JavaScript");
    }

    #[test]
    fn markup_in_records_is_rendered_inert() {
        let evil = r#"https://x.test/#"><script>alert(1)</script><img/src=x/onerror=alert(2)>"#;
        let mut r = row("web01", evil);
        r.owner = "<b>mallory</b>".into();
        r.certificate_detail = "<i>why</i>".into();
        let html = render(&page(vec![r])).unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>") && !html.contains("<i>"), "{html}");
        assert!(
            html.contains(
                "<code>https://x.test/#&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;&#60;img/src=x/onerror=alert(2)&#62;</code>"
            ),
            "{html}"
        );
        assert!(
            html.contains("<dd>&#60;b&#62;mallory&#60;/b&#62;</dd>"),
            "{html}"
        );
    }

    #[test]
    fn an_empty_host_says_so() {
        let html = render(&page(vec![])).unwrap();
        assert!(html.contains("<p>No enabled containers.</p>"), "{html}");
        assert!(!html.contains("<article"));
    }
}
