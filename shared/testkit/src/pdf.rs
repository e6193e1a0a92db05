//! Small, valid PDF files made here (not copied from anywhere): one A4 page of Helvetica text lines, with a
//! correct cross-reference table, so a PDF reader opens them and the connector's `%PDF-` check sees a real file.

use base64::Engine;

/// A one-page PDF showing `lines` (ASCII; `(`, `)` and `\` are escaped).
pub fn specification_pdf(lines: &[&str]) -> Vec<u8> {
    pdf_of_size(lines, 0)
}

/// As [`specification_pdf`], grown with blank content to at least `min_size` bytes (for size limits and figures).
pub fn pdf_of_size(lines: &[&str], min_size: usize) -> Vec<u8> {
    let mut content = String::from("BT\n/F1 11 Tf\n56 780 Td\n14 TL\n");
    for line in lines {
        let escaped: String = line
            .chars()
            .filter(char::is_ascii)
            .flat_map(|c| match c {
                '(' | ')' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET\n");
    let plain = assemble(&content);
    if plain.len() >= min_size {
        return plain;
    }
    // Blanks are insignificant in a content stream.
    content.push_str(&" ".repeat(min_size - plain.len()));
    assemble(&content)
}

fn assemble(content: &str) -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> \
         /Contents 5 0 R >>"
            .to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
    ];
    let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Standard base64, as the push body's `content_base64` carries a file.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The two specification pages of `events/invoice-with-specification.json`.
pub fn sample_specification() -> [(&'static str, Vec<u8>); 2] {
    [
        (
            "time-and-material-2025-09.pdf",
            specification_pdf(&[
                "Specification: time & material, September 2025",
                "Project P-1001 Website relaunch",
                "2025-09-01 to 2025-09-30  J. Doe (senior consultant)  80.0 h  8000.00",
            ]),
        ),
        (
            "expenses-2025-09.pdf",
            specification_pdf(&[
                "Specification: expenses, September 2025",
                "Project P-1001 Website relaunch",
                "No expenses this month",
            ]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cross_reference_table_points_at_the_objects() {
        let pdf = specification_pdf(&["Hello (world) \\ back"]);
        assert!(pdf.starts_with(b"%PDF-1.4\n"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        let text = String::from_utf8_lossy(&pdf);
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pdf[startxref..].starts_with(b"xref\n"));
        let table = String::from_utf8_lossy(&pdf[startxref..]).into_owned();
        for (n, line) in table.lines().skip(3).take(5).enumerate() {
            let offset: usize = line[..10].parse().unwrap();
            let want = format!("{} 0 obj", n + 1);
            assert!(
                pdf[offset..].starts_with(want.as_bytes()),
                "object {}",
                n + 1
            );
        }
        assert!(text.contains("(Hello \\(world\\) \\\\ back) Tj"));
    }

    #[test]
    fn grows_to_the_size_asked() {
        let pdf = pdf_of_size(&["x"], 1_000_000);
        assert!((1_000_000..1_001_000).contains(&pdf.len()), "{}", pdf.len());
        let small = specification_pdf(&["x"]);
        assert!(small.len() < 1000);
    }
}
