"""Crystal graphs, candidate pools and GNN surrogates for materials campaigns."""
