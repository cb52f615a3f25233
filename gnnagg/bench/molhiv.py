"""Write ogbg-molhiv in OGB's on-disk layout from MoleculeNet's HIV.csv.

OGB builds ogbg-molhiv from exactly these SMILES: ``smiles2graph`` features
(9 per atom, 3 per bond) and a scaffold split (Bemis-Murcko scaffolds with
chirality, scaffold groups largest first: 80% train, 10% valid, 10% test).
The files written here let ``ogb.graphproppred.PygGraphPropPredDataset``
and ``Evaluator`` run unchanged, behind a firewall too.
"""
from __future__ import annotations

import gzip
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

NAME = "ogbg-molhiv"


def _parse(smiles: str):
    """RDKit molecule; SMILES that fail today's valence checks (a few
    aluminium and boron complexes) are read without full sanitisation."""
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]
    mol = Chem.MolFromSmiles(smiles)
    if mol is not None:
        return mol, True
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    mol.UpdatePropertyCache(strict=False)
    Chem.SanitizeMol(mol, Chem.SanitizeFlags.SANITIZE_ALL ^
                     Chem.SanitizeFlags.SANITIZE_PROPERTIES,
                     catchErrors=True)
    return mol, False


def mol_graph(mol) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(node_feat (n, 9), bonds (2, b), bond_feat (b, 3))`` with OGB's
    feature functions; each bond once (OGB's loader adds the inverse)."""
    from ogb.utils.features import (atom_to_feature_vector,
                                    bond_to_feature_vector)
    atoms = np.array([atom_to_feature_vector(a) for a in mol.GetAtoms()],
                     dtype=np.int64)
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx(),
              bond_to_feature_vector(b)) for b in mol.GetBonds()]
    index = np.array([[i for i, _, _ in bonds], [j for _, j, _ in bonds]],
                     dtype=np.int64).reshape(2, -1)
    feats = np.array([f for _, _, f in bonds], dtype=np.int64).reshape(-1, 3)
    return atoms, index, feats


def scaffold_split(smiles: List[str], mols: List, parsed: List[bool],
                   frac_train: float = 0.8, frac_valid: float = 0.1
                   ) -> Dict[str, List[int]]:
    """OGB's scaffold split: Murcko scaffolds with chirality, groups sorted
    by size (ties: first index) largest first, filled into train, then valid,
    then test. Molecules read without sanitisation get their own group."""
    from rdkit.Chem.Scaffolds import MurckoScaffold
    groups: Dict[str, List[int]] = defaultdict(list)
    for i, (mol, ok) in enumerate(zip(mols, parsed)):
        key = (MurckoScaffold.MurckoScaffoldSmiles(mol=mol,
                                                   includeChirality=True)
               if ok else f"unsanitised:{i}")
        groups[key].append(i)
    ordered = sorted(groups.values(), key=lambda g: (len(g), g[0]),
                     reverse=True)
    train_cut, valid_cut = frac_train * len(smiles), \
        (frac_train + frac_valid) * len(smiles)
    split: Dict[str, List[int]] = {"train": [], "valid": [], "test": []}
    for group in ordered:
        if len(split["train"]) + len(group) <= train_cut:
            split["train"] += group
        elif len(split["train"]) + len(split["valid"]) + len(group) <= \
                valid_cut:
            split["valid"] += group
        else:
            split["test"] += group
    return {k: sorted(v) for k, v in split.items()}


def _write_csv(path: Path, rows, header=None) -> None:
    pd.DataFrame(rows).to_csv(path, index=False, header=header,
                              compression="gzip")


def prepare_molhiv(csv_path: str | os.PathLike, root: str | os.PathLike
                   ) -> Path:
    """Write ``root/ogbg_molhiv`` (raw graphs, labels, scaffold split,
    mapping, release marker) from ``HIV.csv`` or ``HIV.csv.gz``; returns the
    data set directory. Written to a temporary folder and renamed, so an
    interrupted run leaves nothing half-written."""
    csv_path, root = Path(csv_path), Path(root)
    if not csv_path.is_file():
        raise FileNotFoundError(f"no such file: {csv_path}")
    opener = gzip.open if csv_path.suffix == ".gz" else open
    with opener(csv_path, "rt") as handle:
        table = pd.read_csv(handle)
    missing = {"smiles", "HIV_active"} - set(table.columns)
    if missing:
        raise ValueError(f"{csv_path} lacks the column(s) {sorted(missing)}; "
                         "expected MoleculeNet's HIV.csv")
    target = root / "ogbg_molhiv"
    tmp = root / "ogbg_molhiv.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("raw", "mapping", "split/scaffold"):
        (tmp / sub).mkdir(parents=True)

    smiles = table["smiles"].tolist()
    mols, parsed = zip(*(_parse(s) for s in tqdm(smiles, desc="parsing")))
    sizes, edge_rows, node_feat, edge_feat = [], [], [], []
    for mol in tqdm(mols, desc="featurising"):
        atoms, index, feats = mol_graph(mol)
        sizes.append((len(atoms), index.shape[1]))
        node_feat.append(atoms)
        edge_rows.append(index.T)
        edge_feat.append(feats)
    _write_csv(tmp / "raw/edge.csv.gz", np.concatenate(edge_rows))
    _write_csv(tmp / "raw/num-node-list.csv.gz", [n for n, _ in sizes])
    _write_csv(tmp / "raw/num-edge-list.csv.gz", [e for _, e in sizes])
    _write_csv(tmp / "raw/node-feat.csv.gz", np.concatenate(node_feat))
    _write_csv(tmp / "raw/edge-feat.csv.gz", np.concatenate(edge_feat))
    _write_csv(tmp / "raw/graph-label.csv.gz",
               table["HIV_active"].astype(int).values)
    _write_csv(tmp / "mapping/mol.csv.gz",
               table[["HIV_active", "smiles"]], header=True)
    for name, ids in scaffold_split(smiles, list(mols), list(parsed)).items():
        _write_csv(tmp / f"split/scaffold/{name}.csv.gz", ids)
    (tmp / "RELEASE_v1.txt").write_text(
        "written by gnnagg prepare from MoleculeNet's HIV.csv\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
