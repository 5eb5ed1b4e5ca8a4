use super::*;
use naga::common::wgsl::TypeContext;

/// The `///` lines right above `pub fn {op}(` in `kernels.rs` or `kernels/spatial.rs`.
fn op_doc(op: &str) -> String {
    let source = [include_str!("../kernels.rs"), include_str!("spatial.rs")].join("\n");
    let lines: Vec<&str> = source.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("pub fn {op}(")))
        .unwrap_or_else(|| panic!("no op {op}"));
    let mut doc = Vec::new();
    for line in lines[..start].iter().rev() {
        let line = line.trim_start();
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
        } else if !line.starts_with("#[") {
            break;
        }
    }
    doc.reverse();
    doc.join(" ")
}

/// `[a · b, c]` → `[a·b,c]`: shapes compared without spaces.
fn squeeze(shape: &str) -> String {
    shape.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn binding_shape_comments_match_the_ops_docs() {
    for kernel in KERNELS {
        let (file, op) = (format!("{}.wgsl", kernel.op), kernel.op);
        let doc = op_doc(op);
        assert!(
            doc.contains(&format!("(`{file}`)")),
            "the doc of Plan::{op} does not name {file}: {doc}"
        );
        let lines: Vec<&str> = kernel.source.lines().collect();
        let mut storage = 0;
        for (i, line) in lines.iter().enumerate() {
            if !line.contains("@binding(") || line.contains("var<uniform>") {
                continue;
            }
            storage += 1;
            let comment = lines[i - 1]
                .strip_prefix("// ")
                .unwrap_or_else(|| panic!("{file}: no shape comment above {line}"));
            let (name, rest) = comment.split_once(": ").expect("`name: [shape]`");
            let shape = &rest[..=rest.find(']').expect("a shape in brackets")];
            let wanted = format!("`{name}``{}`", squeeze(shape));
            assert!(
                squeeze(&doc).contains(&wanted),
                "{file}: `{name}: {shape}` is not in the doc of Plan::{op}: {doc}"
            );
        }
        assert!(storage >= 2, "{file}: found {storage} storage bindings");
        assert_eq!(
            storage,
            kernel.storage.len(),
            "{file}: the kernel table lists another number of storage bindings"
        );
    }
}

/// The forms of `kernel` as they are compiled: the `f32` one, and the half-precision
/// variants of a kernel that has them.
fn compiled_forms(kernel: &KernelSource) -> Vec<(Encoding, String)> {
    ENCODINGS
        .into_iter()
        .filter(|&e| e == Encoding::F32 || weights::has_variants(kernel.source))
        .map(|e| {
            let source = kernel
                .wgsl(e)
                .unwrap_or_else(|p| panic!("{}: {p}", kernel.op));
            (e, source)
        })
        .collect()
}

/// `source` parsed and validated by naga (wgpu's WGSL front end and validator).
fn parse(source: &str, what: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(source)));
    let flags = naga::valid::ValidationFlags::all();
    naga::valid::Validator::new(flags, naga::valid::Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(source)));
    module
}

/// A uniform struct as the test compares it: its name, its members (name, WGSL type,
/// offset) and its size.
type Described = (String, Vec<(String, String, u32)>, u32);

/// `module`'s uniform struct, or what is wrong with its uniform binding.
fn wgsl_uniform(module: &naga::Module) -> std::result::Result<Described, String> {
    let uniforms: Vec<_> = module
        .global_variables
        .iter()
        .map(|(_, var)| var)
        .filter(|var| var.space == naga::AddressSpace::Uniform)
        .collect();
    let [params] = uniforms[..] else {
        return Err(format!("{} uniform bindings, not one", uniforms.len()));
    };
    let binding = params.binding.as_ref().map(|b| (b.group, b.binding));
    if binding != Some((0, 0)) {
        return Err(format!("the uniform is bound at {binding:?}, not (0, 0)"));
    }
    let ty = &module.types[params.ty];
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        return Err("the uniform is not a struct".into());
    };
    let members = members
        .iter()
        .map(|m| {
            let name = m.name.clone().unwrap_or_default();
            (name, module.types.type_to_string(m.ty), m.offset)
        })
        .collect();
    Ok((ty.name.clone().unwrap_or_default(), members, *span))
}

#[test]
fn uniform_structs_match_the_shaders() {
    let mut problems = Vec::new();
    for kernel in KERNELS {
        let rust = kernel.uniform;
        let members: Vec<_> = rust
            .members
            .iter()
            .map(|m| (m.name.to_string(), m.ty.to_string(), m.offset as u32))
            .collect();
        let wanted = (rust.name.to_string(), members, rust.size as u32);
        for (encoding, source) in compiled_forms(kernel) {
            let what = format!("{}.wgsl ({})", kernel.op, encoding.name());
            match wgsl_uniform(&parse(&source, &what)) {
                Ok(found) if found == wanted => {}
                Ok(found) => problems.push(format!(
                    "{what}: the uniform struct (name, [(member, type, offset)], size) is\n  \
                     {found:?}\nbut the Rust struct is\n  {wanted:?}"
                )),
                Err(problem) => problems.push(format!("{what}: {problem}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The value of the WGSL `const name: u32` declared in `module`.
fn u32_constant(module: &naga::Module, name: &str) -> Option<u32> {
    module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .map(|(_, c)| match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v,
            ref other => panic!("{name} = {other:?}, not a u32 literal"),
        })
}

#[test]
fn shared_constants_are_declared_once_and_tile_sizes_agree() {
    for kernel in KERNELS {
        for name in SHARED_NAMES {
            assert!(
                !kernel.source.contains(&format!("const {name}:")),
                "{}.wgsl declares the shared constant {name}",
                kernel.op
            );
        }
        let module = parse(&with_shared_constants(kernel.source), kernel.op);
        assert_eq!(u32_constant(&module, "WORKGROUP"), Some(WORKGROUP));
        assert_eq!(
            u32_constant(&module, "ACTIVATION_SILU"),
            Some(ACTIVATION_SILU)
        );
    }
    for (op, name, block) in [
        ("linear", "BLOCK", LINEAR_BLOCK),
        ("conv2d", "BLOCK_POSITIONS", CONV_BLOCK_POSITIONS),
        ("conv2d", "BLOCK_OUTPUTS", CONV_BLOCK_OUTPUTS),
    ] {
        let kernel = KERNELS.iter().find(|k| k.op == op).expect("in the table");
        let module = parse(&with_shared_constants(kernel.source), op);
        assert_eq!(
            u32_constant(&module, name),
            Some(block),
            "{op}.wgsl's {name}"
        );
    }
}
