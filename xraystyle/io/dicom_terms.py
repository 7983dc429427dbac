"""Enumerated values of coded DICOM header fields that xraystyle may show or write.

A CS element can hold any short string, and some scanners and PACS put identifiers in fields
meant for codes (a patient name typed into BodyPartExamined). So a coded value reaches
metadata, notes, messages, reports or a derived DICOM only when it is one of the values the
standard defines; anything else is dropped and reported without its value.
"""

from __future__ import annotations

# PS3.16 Annex L (Correspondence of Anatomic Region Codes and Body Part Examined Defined
# Terms), plus THORAX, which vendors write for chest radiographs.
BODY_PARTS = (
    "ABDOMEN", "ABDOMENPELVIS", "ABDOMINALAORTA", "ACJOINT", "ADRENAL", "AMNIOTICFLUID", "ANKLE",
    "ANTCARDIACV", "ANTCOMMA", "ANTSPINALA", "ANTTIBIALA", "ANUS", "AORTA", "AORTICARCH", "APPENDIX",
    "ARM", "AXILLA", "AXILLARYA", "AXILLARYV", "BACK", "BASILARA", "BILEDUCT", "BLADDER", "BRACHIALA",
    "BRACHIALV", "BRACHIOCA", "BRAIN", "BREAST", "BRONCHUS", "BUTTOCK", "CALCANEUS", "CALF", "CAROTID",
    "CCA", "CELIACA", "CEPHALICV", "CEREBELLUM", "CEREBHEMISPHERE", "CERVIX", "CHEEK", "CHEST",
    "CHESTABDOMEN", "CHESTABDPELVIS", "CIRCLEOFWILLIS", "CLAVICLE", "COCCYX", "COLON", "COMMONILIACA",
    "COMMONILIACV", "CORNEA", "CORONARYARTERY", "CSPINE", "CTSPINE", "CUBITALV", "DUODENUM", "EAR",
    "ECA", "ELBOW", "ESOPHAGUS", "EXTREMITY", "EYE", "EYELID", "FACE", "FACIALA", "FEMORALA", "FEMORALV",
    "FEMUR", "FIBULA", "FINGER", "FOOT", "FOREARM", "GALLBLADDER", "HAND", "HEAD", "HEADNECK", "HEART",
    "HEPATICA", "HEPATICV", "HIP", "HUMERUS", "IAC", "ICA", "ILEUM", "ILIUM", "INNOMINATEA",
    "INNOMINATEV", "INTRACRANIALA", "JAW", "JEJUNUM", "JUGULARV", "KIDNEY", "KNEE", "LARYNX", "LEG",
    "LIVER", "LSPINE", "LSSPINE", "LUNG", "MAXILLA", "MEDIASTINUM", "MESENTRICA", "MESENTRICV", "MOUTH",
    "NECK", "NECKCHEST", "NECKCHESTABDOMEN", "NECKCHESTABDPELV", "NOSE", "ORBIT", "OVARY", "PANCREAS",
    "PAROTID", "PATELLA", "PELVIS", "PENIS", "PERONEALA", "PHARYNX", "POPLITEALA", "POPLITEALV",
    "PORTALV", "PROSTATE", "PULMONARYA", "PULMONARYV", "RADIUS", "RADIUSULNA", "RECTUM", "RENALA",
    "RENALV", "RIB", "SACRUM", "SCALP", "SCAPULA", "SCLERA", "SCROTUM", "SEMINALVESICLE", "SHOULDER",
    "SKULL", "SPINE", "SPLEEN", "SPLENICA", "SPLENICV", "SSPINE", "STERNUM", "STOMACH", "SUBCLAVIANA",
    "SUBCLAVIANV", "SUBMANDIBULAR", "TESTIS", "THIGH", "THORACICAORTA", "THORAX", "THUMB", "THYMUS",
    "THYROID", "TIBIA", "TIBIAFIBULA", "TLSPINE", "TMJ", "TOE", "TONGUE", "TRACHEA", "TSPINE", "ULNA",
    "URETER", "URETHRA", "UTERUS", "VAGINA", "VERTEBRALA", "VULVA", "WHOLEBODY", "WRIST", "ZYGOMA",
)
# PS3.3 C.11.2.1.3 and C.11.6.1.2.
VOI_LUT_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
PRESENTATION_LUT_SHAPES = ("IDENTITY", "INVERSE")
BURNED_IN_ANNOTATION = ("YES", "NO")
# PS3.3 C.7.6.3.1.2, retired terms included: only named in refusals.
PHOTOMETRIC_INTERPRETATIONS = (
    "MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "HSV", "ARGB", "CMYK", "YBR_FULL",
    "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "XYB",
)


def coded(value: object, allowed: tuple[str, ...]) -> str | None:
    """``value`` upper-cased when it is one of ``allowed`` (case and surrounding space ignored),
    else None. Never returns anything that is not in ``allowed``."""
    if value is None:
        return None
    text = str(value).strip().upper()
    return text if text in allowed else None
