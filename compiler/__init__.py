"""ttcl.compiler: .ttc source -> AST -> checks -> DAG -> budget analysis."""
