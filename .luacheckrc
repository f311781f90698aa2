std = "max"
max_line_length = 120
files["spec"] = { std = "+busted" }
files["sim"] = { read_globals = { "ngx" } }
files["spec/ngx"] = { std = "+busted", read_globals = { "ngx" } }
