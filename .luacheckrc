std = "max"
max_line_length = 120
files["spec"] = { std = "+busted" }
-- nginx code may write ngx.status / ngx.header: ngx is a writable global there.
files["sim"] = { globals = { "ngx" } }
files["spec/ngx"] = { std = "+busted", globals = { "ngx" } }
files["examples"] = { globals = { "ngx" } }
files["bench"] = { globals = { "ngx" } }
