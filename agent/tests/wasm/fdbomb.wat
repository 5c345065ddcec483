;; Opens the sandbox directory again and again until refused; traps if it was refused
;; before 1000 opens (the handle limit must not be that low).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) ".")
  (func (export "_start") (local $i i32)
    (loop $again
      (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0)
            (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 100)))
        (then (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $again))))
    (if (i32.lt_u (local.get $i) (i32.const 1000)) (then unreachable))))
