//! Structure layouts from a vmlinux's DWARF: the byte offset of each member a reader needs
//! (`task_struct.tasks`, `mm_struct.pgd`, ...), with the members of anonymous structs and
//! unions flattened into their parent, as C lets code name them.

use super::LinuxError;
use gimli::{AttributeValue, EndianSlice, RunTimeEndian, UnitOffset};
use object::{Object, ObjectSection};
use std::borrow::Cow;
use std::collections::HashMap;

type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// One structure's layout: its size and its members' offsets (anonymous members flattened).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// `sizeof`.
    pub size: u64,
    /// Member name → (byte offset, byte size when known).
    pub members: HashMap<String, (u64, u64)>,
}

/// The layouts of the structures named in `wanted`, from the DWARF of the ELF in `bytes`
/// (`name` is used in errors). A structure the DWARF does not define is absent from the
/// map; the first complete definition wins (all units agree on a kernel's types).
pub fn layouts(name: &str, bytes: &[u8], wanted: &[&str]) -> Result<HashMap<String, Layout>, LinuxError> {
    let bad = |reason: String| LinuxError::Dwarf { path: name.into(), reason };
    let file = object::File::parse(bytes).map_err(|e| bad(e.to_string()))?;
    let endian = if file.is_little_endian() { RunTimeEndian::Little } else { RunTimeEndian::Big };
    let sections = gimli::DwarfSections::load(|id| -> Result<Cow<[u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    })
    .map_err(|e| bad(e.to_string()))?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, endian));
    let mut found: HashMap<String, Layout> = HashMap::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next().map_err(|e| bad(e.to_string()))? {
        if found.len() == wanted.len() {
            break;
        }
        let unit = dwarf.unit(header).map_err(|e| bad(e.to_string()))?;
        let mut here = vec![];
        let mut cursor = unit.entries();
        while let Some(entry) = cursor.next_dfs().map_err(|e| bad(e.to_string()))? {
            if entry.tag() != gimli::DW_TAG_structure_type
                || !entry.has_children()
                || entry.attr_value(gimli::DW_AT_declaration).is_some()
            {
                continue;
            }
            let Some(n) = entry.attr_value(gimli::DW_AT_name) else { continue };
            let Ok(n) = dwarf.attr_string(&unit, n) else { continue };
            let n = String::from_utf8_lossy(n.slice()).into_owned();
            if wanted.contains(&n.as_str()) && !found.contains_key(&n) && !here.iter().any(|(m, _)| *m == n) {
                let size = match entry.attr_value(gimli::DW_AT_byte_size) {
                    Some(v) => v.udata_value().unwrap_or(0),
                    None => 0,
                };
                here.push((n, (entry.offset(), size)));
            }
        }
        for (n, (offset, size)) in here {
            let mut members = HashMap::new();
            collect_members(&dwarf, &unit, offset, 0, &mut members, 0).map_err(|e| bad(e.to_string()))?;
            found.insert(n, Layout { size, members });
        }
    }
    Ok(found)
}

/// Anonymous members nest this deep at most (the kernel nests two or three).
const MAX_NESTING: u32 = 8;

fn collect_members(
    dwarf: &gimli::Dwarf<R<'_>>,
    unit: &gimli::Unit<R<'_>>,
    offset: UnitOffset,
    base: u64,
    out: &mut HashMap<String, (u64, u64)>,
    depth: u32,
) -> gimli::Result<()> {
    if depth > MAX_NESTING {
        return Ok(());
    }
    let mut tree = unit.entries_tree(Some(offset))?;
    let root = tree.root()?;
    let mut children = root.children();
    let mut anonymous = vec![];
    while let Some(child) = children.next()? {
        let e = child.entry();
        if e.tag() != gimli::DW_TAG_member {
            continue;
        }
        let at = match e.attr_value(gimli::DW_AT_data_member_location) {
            Some(v) => v.udata_value().unwrap_or(0),
            // Union members have no location: they start at the union's start.
            None => 0,
        };
        let ty = match e.attr_value(gimli::DW_AT_type) {
            Some(AttributeValue::UnitRef(o)) => Some(o),
            _ => None,
        };
        match e.attr_value(gimli::DW_AT_name) {
            Some(n) => {
                let n = dwarf.attr_string(unit, n)?;
                let size = ty.map(|t| type_size(unit, t, 0)).unwrap_or(0);
                out.entry(String::from_utf8_lossy(n.slice()).into_owned()).or_insert((base + at, size));
            }
            None => {
                if let Some(t) = ty {
                    anonymous.push((t, base + at));
                }
            }
        }
    }
    for (t, at) in anonymous {
        collect_members(dwarf, unit, t, at, out, depth + 1)?;
    }
    Ok(())
}

/// The byte size of the type at `offset`, through typedefs and qualifiers; 0 when unknown.
fn type_size(unit: &gimli::Unit<R<'_>>, offset: UnitOffset, depth: u32) -> u64 {
    if depth > MAX_NESTING {
        return 0;
    }
    let Ok(mut cursor) = unit.entries_at_offset(offset) else { return 0 };
    let Ok(Some(e)) = cursor.next_dfs() else { return 0 };
    if let Some(v) = e.attr_value(gimli::DW_AT_byte_size).and_then(|v| v.udata_value()) {
        return v;
    }
    if e.tag() == gimli::DW_TAG_pointer_type {
        return u64::from(unit.header.address_size());
    }
    if e.tag() == gimli::DW_TAG_array_type {
        return 0;
    }
    match e.attr_value(gimli::DW_AT_type) {
        Some(AttributeValue::UnitRef(o)) => type_size(unit, o, depth + 1),
        _ => 0,
    }
}
