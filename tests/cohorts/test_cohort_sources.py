"""Source adapters on a few rows written in each cohort's real CSV layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xraystyle.cohorts.build import build_manifest
from xraystyle.cohorts.manifest import load_manifest
from xraystyle.cohorts.sources import SourceOptions, get_source
from xraystyle.errors import ConfigError, ManifestError

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
NIH_ROWS = [
    "00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143",
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
    "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171",
    "00000003_000.png,Effusion|Hernia,0,3,74,F,AP,2500,2048,0.168,0.168",
    "00000004_000.png,Mass|Nodule|Effusion,0,4,82,M,AP,2048,2500,0.168,0.168",
]

CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum",
                    "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
                    "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
                    "Support Devices"]
MIMIC_LABEL_COLUMNS = ["subject_id", "study_id", "Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                       "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion", "Lung Opacity", "No Finding",
                       "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices"]
MIMIC_META_COLUMNS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                      "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                      "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]
VINDR_LABEL_COLUMNS = ["image_id", "rad_id", "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly",
                       "Clavicle fracture", "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD",
                       "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst", "Mediastinal shift",
                       "Nodule/Mass", "Pleural effusion", "Pleural thickening", "Pneumothorax",
                       "Pulmonary fibrosis", "Rib fracture", "Other lesion", "COPD", "Lung tumor", "Pneumonia",
                       "Tuberculosis", "Other diseases", "No finding"]
PADCHEST_COLUMNS = ["", "ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth",
                    "PatientSex_DICOM", "ViewPosition_DICOM", "Projection", "MethodProjection", "Pediatric",
                    "Modality_DICOM", "Manufacturer_DICOM", "PhotometricInterpretation_DICOM",
                    "PixelRepresentation_DICOM", "PixelAspectRatio_DICOM", "SpatialResolution_DICOM",
                    "BitsStored_DICOM", "WindowCenter_DICOM", "WindowWidth_DICOM", "Rows_DICOM", "Columns_DICOM",
                    "XRayTubeCurrent_DICOM", "Exposure_DICOM", "ExposureInuAs_DICOM", "ExposureTime",
                    "RelativeXRayExposure_DICOM", "ReportID", "Report", "MethodLabel", "Labels", "Localizations",
                    "LabelsLocalizationsBySentence", "labelCUIS", "LocalizationsCUIS"]


def nih_csv(tmp_path, rows=NIH_ROWS, name="Data_Entry_2017_v2020.csv"):
    p = tmp_path / name
    p.write_text(NIH_HEADER + "\n" + "\n".join(rows) + "\n")
    return p


def frame_csv(tmp_path, name, columns, rows):
    p = tmp_path / name
    pd.DataFrame([{c: r.get(c, "") for c in columns} for r in rows], columns=columns).to_csv(p, index=False)
    return p


def read(source, **kw):
    return get_source(source).read(SourceOptions(source=source, **kw))


def col(df, name):
    return df[name].tolist()


# ------------------------------------------------------------------------------------------ NIH


def test_nih_labels_patients_views(tmp_path):
    t = read("nih", csv=[nih_csv(tmp_path)])
    assert col(t, "path")[0] == "00000001_000.png"
    assert col(t, "patient_id") == ["1", "1", "2", "3", "4"]
    assert col(t, "study_id") == ["1_0", "1_1", "2_0", "3_0", "4_0"]
    assert col(t, "view") == ["PA", "PA", "PA", "AP", "AP"]
    assert col(t, "effusion") == [0, 0, 0, 1, 1]
    assert col(t, "cardiomegaly") == [1, 1, 0, 0, 0]
    assert col(t, "no_finding") == [0, 0, 1, 0, 0]
    assert col(t, "pleural_thickening") == [0] * 5
    assert col(t, "sex") == ["M", "M", "M", "F", "M"] and col(t, "age")[0] == 57


def test_nih_2017_release_ages(tmp_path):
    rows = [r.replace(",57,", ",057Y,").replace(",58,", ",414,").replace(",81,", ",006M,") for r in NIH_ROWS]
    t = read("nih", csv=[nih_csv(tmp_path, rows=rows)])
    assert t["age"].iloc[0] == 57 and np.isnan(t["age"].iloc[1]) and t["age"].iloc[2] == pytest.approx(0.5)


def test_nih_unknown_label_refused(tmp_path):
    rows = NIH_ROWS[:1] + ["00000009_000.png,Efusion,0,9,50,F,PA,1,1,1,1"]
    with pytest.raises(ManifestError, match="unknown label.*'Efusion'"):
        read("nih", csv=[nih_csv(tmp_path, rows=rows)])


def test_nih_missing_column_names_it(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("Image Index,Patient ID\na.png,1\n")
    with pytest.raises(ManifestError, match="missing column.*'Finding Labels'.*NIH"):
        read("nih", csv=[p])


def test_nih_refuses_options_it_does_not_use(tmp_path):
    with pytest.raises(ConfigError, match="--uncertain applies to chexpert and mimic only"):
        read("nih", csv=[nih_csv(tmp_path)], uncertain="positive")
    with pytest.raises(ConfigError, match="takes no --metadata"):
        read("nih", csv=[nih_csv(tmp_path)], metadata=tmp_path / "m.csv")
    with pytest.raises(ConfigError, match="needs --csv"):
        read("nih")


def test_build_nih_findings_and_views(tmp_path):
    m, report = build_manifest("nih", tmp_path / "out" / "m.csv", csv=[nih_csv(tmp_path)],
                               findings="effusion", views="PA")
    assert m.findings == ["effusion"] and len(m) == 3 and report.dropped_view == 2
    assert set(m.df.columns) == {"path", "patient_id", "study_id", "view", "split", "sex", "age", "effusion"}
    assert m.root == tmp_path / "out"  # no --images: source paths relative to the manifest
    m2, _ = build_manifest("nih", tmp_path / "m2.csv", csv=[nih_csv(tmp_path)], views="all")
    assert len(m2) == 5 and "hernia" in m2.findings
    m3, _ = build_manifest("nih", tmp_path / "m3.csv", csv=[nih_csv(tmp_path)], views="ap")
    assert col(m3.df, "view") == ["AP", "AP"]


def test_build_refuses_findings_the_source_lacks_or_the_vocabulary_lacks(tmp_path):
    with pytest.raises(ManifestError, match="source nih has no finding 'lung_opacity'"):
        build_manifest("nih", tmp_path / "m.csv", csv=[nih_csv(tmp_path)], findings="effusion,lung_opacity")
    with pytest.raises(ConfigError, match="'efusion' not in the vocabulary"):
        build_manifest("nih", tmp_path / "m.csv", csv=[nih_csv(tmp_path)], findings="efusion")
    with pytest.raises(ManifestError, match="no image of source nih is in the chosen views"):
        build_manifest("nih", tmp_path / "m.csv", csv=[nih_csv(tmp_path)], views="LATERAL")
    with pytest.raises(ConfigError, match="unknown cohort source 'nhi'"):
        build_manifest("nhi", tmp_path / "m.csv", csv=[nih_csv(tmp_path)])


def test_build_refuses_to_overwrite_its_source(tmp_path):
    src = nih_csv(tmp_path)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        build_manifest("nih", src, csv=[src])


def test_build_split_is_per_patient_and_seeded(tmp_path):
    rows = [f"{p:08d}_{k:03d}.png,No Finding,{k},{p},40,F,PA,1,1,1,1" for p in range(200) for k in range(3)]
    src = nih_csv(tmp_path, rows=rows)
    a, _ = build_manifest("nih", tmp_path / "a.csv", csv=[src], split_seed=5)
    b, _ = build_manifest("nih", tmp_path / "b.csv", csv=[src], split_seed=5)
    c, _ = build_manifest("nih", tmp_path / "c.csv", csv=[src], split_seed=6, split="0.5,0.25,0.25")
    assert col(a.df, "split") == col(b.df, "split") != col(c.df, "split")
    assert (a.df.groupby("patient_id")["split"].nunique() == 1).all()
    assert abs((c.df["split"] == "train").mean() - 0.5) < 0.12


# ------------------------------------------------------------------------------------- CheXpert


def chexpert_rows():
    p = "CheXpert-v1.0-small/train/"
    return [
        {"Path": p + "patient00001/study1/view1_frontal.jpg", "Sex": "Female", "Age": "68",
         "Frontal/Lateral": "Frontal", "AP/PA": "AP", "No Finding": "1.0", "Pneumothorax": "0.0",
         "Support Devices": "1.0"},
        {"Path": p + "patient00002/study2/view1_frontal.jpg", "Sex": "Female", "Age": "87",
         "Frontal/Lateral": "Frontal", "AP/PA": "AP", "Cardiomegaly": "-1.0", "Pleural Effusion": "-1.0"},
        {"Path": p + "patient00002/study1/view1_frontal.jpg", "Sex": "Female", "Age": "83",
         "Frontal/Lateral": "Frontal", "AP/PA": "PA", "Pleural Effusion": "0.0"},
        {"Path": p + "patient00002/study1/view2_lateral.jpg", "Sex": "Female", "Age": "83",
         "Frontal/Lateral": "Lateral", "AP/PA": "", "Pleural Effusion": "0.0"},
        {"Path": p + "patient00003/study1/view1_frontal.jpg", "Sex": "Unknown", "Age": "41",
         "Frontal/Lateral": "Frontal", "AP/PA": "PA", "Pleural Effusion": "1.0"},
    ]


@pytest.mark.parametrize("policy, expected", [(None, [np.nan, np.nan, 0, 0, 1]), ("ignore", [np.nan, np.nan, 0, 0, 1]),
                                              ("positive", [np.nan, 1, 0, 0, 1]),
                                              ("negative", [np.nan, 0, 0, 0, 1])])
def test_chexpert_uncertainty_policies(tmp_path, policy, expected):
    src = frame_csv(tmp_path, "train.csv", CHEXPERT_COLUMNS, chexpert_rows())
    t = read("chexpert", csv=[src], uncertain=policy)
    np.testing.assert_array_equal(t["effusion"].to_numpy(), expected)
    assert col(t, "patient_id") == ["patient00001", "patient00002", "patient00002", "patient00002", "patient00003"]
    assert col(t, "study_id")[1] == "patient00002_study2"
    assert col(t, "view") == ["AP", "AP", "PA", "LATERAL", "PA"]
    assert col(t, "frontal") == [True, True, True, False, True]
    assert col(t, "sex") == ["F", "F", "F", "F", ""]
    assert col(t, "no_finding")[0] == 1 and np.isnan(t["no_finding"].iloc[1])


def test_chexpert_frontal_by_default_and_train_plus_valid(tmp_path):
    src = frame_csv(tmp_path, "train.csv", CHEXPERT_COLUMNS, chexpert_rows())
    valid = frame_csv(tmp_path, "valid.csv", CHEXPERT_COLUMNS, [
        {"Path": "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", "Sex": "Male", "Age": "73",
         "Frontal/Lateral": "Frontal", "AP/PA": "AP", "Pleural Effusion": "1.0"}])
    m, report = build_manifest("chexpert", tmp_path / "m.csv", csv=[src, valid], findings="effusion")
    assert len(m) == 5 and report.dropped_view == 1 and "LATERAL" not in set(m.df["view"])


def test_chexpert_refuses_bad_value_and_bad_policy(tmp_path):
    rows = chexpert_rows()
    rows[2]["Pleural Effusion"] = "2.0"
    src = frame_csv(tmp_path, "train.csv", CHEXPERT_COLUMNS, rows)
    with pytest.raises(ManifestError, match="row 3: 'Pleural Effusion' = '2.0'"):
        read("chexpert", csv=[src])
    with pytest.raises(ConfigError, match="--uncertain 'maybe'"):
        read("chexpert", csv=[src], uncertain="maybe")
    rows = chexpert_rows()
    rows[0]["Path"] = "view1_frontal.jpg"
    src = frame_csv(tmp_path, "bad.csv", CHEXPERT_COLUMNS, rows)
    with pytest.raises(ManifestError, match="row 1: 'Path' has no patientNNNNN/studyN/ part"):
        read("chexpert", csv=[src])


# ---------------------------------------------------------------------------------------- MIMIC


def mimic_files(tmp_path, extra_label_rows=()):
    labels = frame_csv(tmp_path, "mimic-cxr-2.0.0-chexpert.csv", MIMIC_LABEL_COLUMNS, [
        {"subject_id": "10000032", "study_id": "50414267", "Pleural Effusion": "1.0", "No Finding": ""},
        {"subject_id": "10000032", "study_id": "53189527", "Pleural Effusion": "-1.0"},
        {"subject_id": "10000764", "study_id": "57375967", "No Finding": "1.0"},
        *extra_label_rows])
    meta = frame_csv(tmp_path, "mimic-cxr-2.0.0-metadata.csv", MIMIC_META_COLUMNS, [
        {"dicom_id": "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "subject_id": "10000032",
         "study_id": "50414267", "ViewPosition": "PA", "Rows": "3056", "Columns": "2544"},
        {"dicom_id": "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "subject_id": "10000032",
         "study_id": "50414267", "ViewPosition": "LATERAL"},
        {"dicom_id": "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "subject_id": "10000032",
         "study_id": "53189527", "ViewPosition": "AP"},
        {"dicom_id": "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714", "subject_id": "10000764",
         "study_id": "57375967", "ViewPosition": "AP AXIAL"},
        {"dicom_id": "ffffffff-00000000-00000000-00000000-00000000", "subject_id": "10009999",
         "study_id": "59999999", "ViewPosition": "PA"},
    ])
    return labels, meta


def test_mimic_join_paths_and_policy(tmp_path, caplog):
    labels, meta = mimic_files(tmp_path)
    t = read("mimic", csv=[labels], metadata=meta, uncertain="positive")
    assert len(t) == 4  # the image of an unlabelled study is left out, with a warning
    assert "1 of 5 images have no label row" in caplog.text
    assert col(t, "path")[0] == "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"
    assert col(t, "patient_id") == ["10000032", "10000032", "10000032", "10000764"]
    assert col(t, "view") == ["PA", "LATERAL", "AP", "AP_AXIAL"]
    assert col(t, "frontal") == [True, False, True, False]
    assert col(t, "effusion")[:3] == [1, 1, 1] and np.isnan(t["effusion"].iloc[3])


def test_mimic_needs_metadata_and_unique_studies(tmp_path):
    labels, meta = mimic_files(tmp_path)
    with pytest.raises(ConfigError, match="needs --metadata"):
        read("mimic", csv=[labels])
    labels, meta = mimic_files(tmp_path, [{"subject_id": "10000032", "study_id": "50414267"}])
    with pytest.raises(ManifestError, match="row 4: a second label row for the same study"):
        read("mimic", csv=[labels], metadata=meta)


# ---------------------------------------------------------------------------------------- VinDr


def test_vindr_boxes_any_reader_rule(tmp_path):
    p = tmp_path / "train.csv"
    p.write_text("image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
                 "aaa1,No finding,14,R11,,,,\naaa1,No finding,14,R7,,,,\naaa1,No finding,14,R9,,,,\n"
                 "bbb2,Cardiomegaly,3,R8,691.0,1375.0,1653.0,1831.0\nbbb2,Cardiomegaly,3,R9,690.0,1370.0,1650.0,1830.0\n"
                 "bbb2,Pleural effusion,10,R10,100.0,100.0,300.0,300.0\n"
                 "ccc3,Nodule/Mass,8,R1,10.0,10.0,40.0,40.0\nccc3,No finding,14,R2,,,,\nccc3,No finding,14,R3,,,,\n")
    t = read("vindr", csv=[p])
    assert col(t, "path") == ["train/aaa1.dicom", "train/bbb2.dicom", "train/ccc3.dicom"]
    assert col(t, "patient_id") == ["aaa1", "bbb2", "ccc3"]
    assert col(t, "cardiomegaly") == [0, 1, 0] and col(t, "effusion") == [0, 1, 0]
    assert col(t, "nodule") == [0, 0, 1]  # one reader of three is enough
    assert col(t, "no_finding") == [1, 0, 0]
    assert col(t, "pneumothorax") == [0, 0, 0]  # a class nobody marked is still a known negative
    p.write_text("image_id,class_name,class_id,rad_id\nx,Pleural efusion,10,R1\n")
    with pytest.raises(ManifestError, match="unknown class_name.*'Pleural efusion'"):
        read("vindr", csv=[p])


def test_vindr_image_labels_layout(tmp_path):
    def row(image, rad, **pos):
        r = {c: "0" for c in VINDR_LABEL_COLUMNS}
        r.update(image_id=image, rad_id=rad, **{k.replace("_", " "): "1" for k in pos})
        return r

    p = frame_csv(tmp_path, "image_labels_train.csv", VINDR_LABEL_COLUMNS, [
        row("i1", "R1", **{"No_finding": 1}), row("i1", "R2", **{"No_finding": 1}),
        row("i2", "R1", Tuberculosis=1), row("i2", "R3", **{"Rib_fracture": 1}),
        row("i3", "R2", **{"Clavicle_fracture": 1, "Other_diseases": 1}),
    ])
    t = read("vindr", csv=[p])
    assert col(t, "tuberculosis") == [0, 1, 0] and col(t, "fracture") == [0, 1, 1]
    assert col(t, "other_disease") == [0, 0, 1] and col(t, "no_finding") == [1, 0, 0]


# ----------------------------------------------------------------------------------------- RSNA


def test_rsna_target_and_headers(tmp_path):
    labels = tmp_path / "stage_2_train_labels.csv"
    labels.write_text("patientId,x,y,width,height,Target\n"
                      "0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0\n"
                      "00436515-870c-4b36-a041-de91049b9ab4,264.0,152.0,213.0,379.0,1\n"
                      "00436515-870c-4b36-a041-de91049b9ab4,562.0,152.0,256.0,453.0,1\n"
                      "00569f44-917d-4c86-a842-81832af98c30,,,,,0\n")
    t = read("rsna", csv=[labels])
    assert col(t, "pneumonia") == [0, 1, 0] and col(t, "view") == ["", "", ""]
    assert col(t, "path")[1] == "00436515-870c-4b36-a041-de91049b9ab4.dcm"
    headers = tmp_path / "headers.csv"
    headers.write_text(",BodyPartExamined,Filename,PatientAge,PatientID,PatientSex,ViewPosition\n"
                       "0,CHEST,0004cfab-14fd-4e49-80ba-63a80b6bddd6.dcm,51,0004cfab-14fd-4e49-80ba-63a80b6bddd6,F,PA\n"
                       "1,CHEST,00436515-870c-4b36-a041-de91049b9ab4.dcm,48,00436515-870c-4b36-a041-de91049b9ab4,F,AP\n")
    t = read("rsna", csv=[labels], metadata=headers)
    assert col(t, "view") == ["PA", "AP", ""] and col(t, "sex") == ["F", "F", ""]
    assert col(t, "age")[:2] == [51, 48] and np.isnan(t["age"].iloc[2])
    labels.write_text("patientId,x,y,width,height,Target\nabc,,,,,2\n")
    with pytest.raises(ManifestError, match="row 1: 'Target' = '2'"):
        read("rsna", csv=[labels])


# ------------------------------------------------------------------------------------- PadChest


def test_padchest_labels_views_age(tmp_path):
    base = {"StudyDate_DICOM": "20140915", "PatientBirth": "1930.0", "PatientSex_DICOM": "F", "Projection": "PA"}
    rows = [
        {**base, "ImageID": "a_k6ga29.png", "ImageDir": "0", "StudyID": "s1", "PatientID": "p1",
         "Labels": "['normal']"},
        {**base, "ImageID": "b_fzis7d.png", "ImageDir": "0", "StudyID": "s2", "PatientID": "p2",
         "Projection": "L", "PatientSex_DICOM": "M",
         "Labels": "['pleural effusion', 'cardiomegaly', 'pericardial effusion']"},
        {**base, "ImageID": "c_x.png", "ImageDir": "54", "StudyID": "s3", "PatientID": "p3",
         "Projection": "AP_horizontal", "PatientSex_DICOM": "O",
         "Labels": "[' pneumonia', 'hydropneumothorax', 'subcutaneous emphysema', 'NSG tube']"},
        {**base, "ImageID": "d_x.png", "ImageDir": "1", "StudyID": "s4", "PatientID": "p4", "Labels": ""},
    ]
    t = read("padchest", csv=[frame_csv(tmp_path, "padchest.csv", PADCHEST_COLUMNS, rows)])
    assert len(t) == 3  # the row without labels is left out
    assert col(t, "path") == ["0/a_k6ga29.png", "0/b_fzis7d.png", "54/c_x.png"]
    assert col(t, "view") == ["PA", "LATERAL", "AP_HORIZONTAL"] and col(t, "frontal") == [True, False, True]
    assert col(t, "no_finding") == [1, 0, 0]
    assert col(t, "effusion") == [0, 1, 1] and col(t, "pneumothorax") == [0, 0, 1]
    assert col(t, "pneumonia") == [0, 0, 1] and col(t, "emphysema") == [0, 0, 0]
    assert col(t, "support_devices") == [0, 0, 1] and col(t, "cardiomegaly") == [0, 1, 0]
    assert col(t, "sex") == ["F", "M", ""] and col(t, "age") == [84, 84, 84]


def test_padchest_refuses_non_list_labels(tmp_path):
    rows = [{"ImageID": "a.png", "ImageDir": "0", "StudyID": "s", "PatientID": "p", "Projection": "PA",
             "Labels": "normal"}]
    with pytest.raises(ManifestError, match="'Labels' of data row 1 is not a list"):
        read("padchest", csv=[frame_csv(tmp_path, "p.csv", PADCHEST_COLUMNS, rows)])


# --------------------------------------------------------------------------------------- folder


def make_folder(root, layout):
    for rel in layout:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    return root


def test_folder_domains(tmp_path):
    root = make_folder(tmp_path / "imgs", ["normal/n1.png", "normal/sub/n2.dcm", "effusion/e1.png",
                                           "effusion/.hidden.png", "effusion/notes.txt", "cardiomegaly/IM0001",
                                           "stray.png"])
    t = read("folder", images=root)
    assert col(t, "path") == ["cardiomegaly/IM0001", "effusion/e1.png", "normal/n1.png", "normal/sub/n2.dcm"]
    assert col(t, "patient_id") == ["IM0001", "e1", "n1", "n2"]
    assert col(t, "effusion") == [0, 1, 0, 0] and col(t, "cardiomegaly") == [1, 0, 0, 0]


def test_folder_findings_leave_other_domains_out(tmp_path):
    root = make_folder(tmp_path / "imgs", ["normal/n1.png", "effusion/e1.png", "cardiomegaly/c1.png"])
    m, report = build_manifest("folder", tmp_path / "imgs" / "m.csv", images=root, findings="effusion")
    assert col(m.df, "path") == ["effusion/e1.png", "normal/n1.png"] and report.dropped_domain == 1
    assert m.root == root  # manifest inside the image folder: no '# root:' line needed
    assert not (tmp_path / "imgs" / "m.csv").read_text().startswith("#")


def test_folder_patient_csv(tmp_path):
    root = make_folder(tmp_path / "imgs", ["normal/n1.png", "effusion/e1.png", "effusion/e2.png"])
    ids = tmp_path / "patients.csv"
    ids.write_text("path,patient_id,view,sex,age\nnormal/n1.png,A,PA,F,50\neffusion/e1.png,B,AP,M,61\n"
                   "effusion/e2.png,A,PA,F,51\n")
    t = read("folder", images=root, csv=[ids])
    assert col(t, "patient_id") == ["B", "A", "A"] and col(t, "view") == ["AP", "PA", "PA"]
    ids.write_text("path,patient_id\nnormal/n1.png,A\n")
    with pytest.raises(ManifestError, match="2 image\\(s\\) have no row"):
        read("folder", images=root, csv=[ids])


def test_folder_refusals(tmp_path):
    with pytest.raises(ConfigError, match="needs --images"):
        read("folder")
    root = make_folder(tmp_path / "imgs", ["normal/n1.png", "efusion/e1.png"])
    with pytest.raises(ManifestError, match="sub-folder 'efusion' is neither 'normal' nor a finding"):
        read("folder", images=root)
    with pytest.raises(ManifestError, match="has no sub-folders"):
        read("folder", images=make_folder(tmp_path / "flat", ["a.png"]))


# ------------------------------------------------------------------------- images and root rule


def test_images_found_in_nested_release_layout_and_root_line(tmp_path):
    images = make_folder(tmp_path / "data" / "nih", ["images_001/images/00000001_000.png",
                                                     "images_001/images/00000001_001.png",
                                                     "images_002/images/00000002_000.png",
                                                     "images_002/images/00000003_000.png"])
    out = tmp_path / "runs" / "m.csv"
    m, report = build_manifest("nih", out, csv=[nih_csv(tmp_path)], images=images, views="all")
    assert report.missing_images == 1 and len(m) == 4  # 00000004_000.png is not there: dropped
    assert out.read_text().splitlines()[0] == f"# root: {images}"
    assert m.root == images and col(m.df, "path")[0] == "images_001/images/00000001_000.png"
    assert m.resolve(m.df["path"].iloc[3]).is_file()


def test_images_inside_manifest_folder_are_written_relative(tmp_path):
    make_folder(tmp_path / "nih" / "images", [r.split(",")[0] for r in NIH_ROWS])
    m, _ = build_manifest("nih", tmp_path / "m.csv", csv=[nih_csv(tmp_path)], images=tmp_path / "nih", views="all")
    assert m.root == tmp_path and col(m.df, "path")[0] == "nih/images/00000001_000.png"
    assert not (tmp_path / "m.csv").read_text().startswith("#")


def test_images_with_source_prefix_and_converted_suffix(tmp_path):
    # CheXpert paths start with the release folder, which --images may already point into.
    root = make_folder(tmp_path / "CheXpert-v1.0-small", [
        "train/patient00001/study1/view1_frontal.jpg", "train/patient00002/study2/view1_frontal.jpg",
        "train/patient00002/study1/view1_frontal.jpg", "train/patient00003/study1/view1_frontal.jpg"])
    src = frame_csv(tmp_path, "train.csv", CHEXPERT_COLUMNS, chexpert_rows())
    m, report = build_manifest("chexpert", tmp_path / "out" / "m.csv", csv=[src], images=root)
    assert report.missing_images == 0 and col(m.df, "path")[0] == "train/patient00001/study1/view1_frontal.jpg"
    # VinDr converted to PNG: matched by name without suffix.
    p = tmp_path / "vindr.csv"
    p.write_text("image_id,class_name,class_id,rad_id\naaa1,No finding,14,R1\nbbb2,Cardiomegaly,3,R2\n")
    png = make_folder(tmp_path / "vindr_png", ["aaa1.png", "bbb2.png"])
    m, _ = build_manifest("vindr", tmp_path / "out" / "v.csv", csv=[p], images=png)
    assert col(m.df, "path") == ["aaa1.png", "bbb2.png"]


def test_missing_image_policies(tmp_path):
    images = make_folder(tmp_path / "imgs", ["00000001_000.png"])
    src = nih_csv(tmp_path)
    m, _ = build_manifest("nih", tmp_path / "keep.csv", csv=[src], images=images, missing="keep", views="all")
    assert len(m) == 5 and col(m.df, "path")[:2] == ["imgs/00000001_000.png", "imgs/00000001_001.png"]
    with pytest.raises(ManifestError, match="4 of 5 images not found"):
        build_manifest("nih", tmp_path / "err.csv", csv=[src], images=images, missing="error", views="all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="5 of 5 images not found"):
        build_manifest("nih", tmp_path / "none.csv", csv=[src], images=tmp_path / "empty", views="all")
    with pytest.raises(ConfigError, match="missing: 'skip'"):
        build_manifest("nih", tmp_path / "x.csv", csv=[src], images=images, missing="skip")


def test_loaded_manifest_from_build_validates(tmp_path):
    m, _ = build_manifest("nih", tmp_path / "m.csv", csv=[nih_csv(tmp_path)], views="all")
    again = load_manifest(tmp_path / "m.csv")
    assert again.content_hash() == m.content_hash() and again.findings == m.findings
