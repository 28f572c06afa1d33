/**
 * Compact word lists the lexicon detector matches on word boundaries,
 * case-insensitively. Lower case; multi-word phrases are matched token by token.
 * Small on purpose: common primary-care, cardiology, endocrinology and
 * oncology vocabulary, not a formulary.
 */

/** Common generic and brand drug names (no Part 2 treatment drugs: those are in PART2_TERMS). */
export const MEDICATIONS: readonly string[] = [
  'acetaminophen', 'tylenol', 'ibuprofen', 'advil', 'motrin', 'naproxen', 'aleve', 'aspirin', 'celecoxib', 'celebrex',
  'lisinopril', 'enalapril', 'ramipril', 'losartan', 'valsartan', 'olmesartan', 'amlodipine', 'norvasc', 'diltiazem',
  'verapamil', 'metoprolol', 'toprol', 'atenolol', 'carvedilol', 'propranolol', 'hydrochlorothiazide', 'hctz',
  'chlorthalidone', 'furosemide', 'lasix', 'spironolactone', 'torsemide', 'hydralazine', 'clonidine',
  'atorvastatin', 'lipitor', 'simvastatin', 'zocor', 'rosuvastatin', 'crestor', 'pravastatin', 'ezetimibe', 'zetia',
  'warfarin', 'coumadin', 'apixaban', 'eliquis', 'rivaroxaban', 'xarelto', 'dabigatran', 'clopidogrel', 'plavix',
  'heparin', 'enoxaparin', 'lovenox', 'digoxin', 'amiodarone', 'nitroglycerin',
  'metformin', 'glucophage', 'glipizide', 'glyburide', 'glimepiride', 'pioglitazone', 'sitagliptin', 'januvia',
  'empagliflozin', 'jardiance', 'dapagliflozin', 'farxiga', 'semaglutide', 'ozempic', 'wegovy', 'liraglutide',
  'victoza', 'dulaglutide', 'trulicity', 'tirzepatide', 'mounjaro', 'insulin', 'lantus', 'humalog', 'novolog',
  'levemir', 'tresiba', 'levothyroxine', 'synthroid', 'methimazole',
  'albuterol', 'proair', 'ventolin', 'fluticasone', 'flovent', 'advair', 'symbicort', 'budesonide', 'montelukast',
  'singulair', 'tiotropium', 'spiriva', 'prednisone', 'methylprednisolone', 'dexamethasone', 'hydrocortisone',
  'amoxicillin', 'augmentin', 'azithromycin', 'zithromax', 'doxycycline', 'cephalexin', 'keflex', 'ciprofloxacin',
  'levofloxacin', 'nitrofurantoin', 'macrobid', 'clindamycin', 'metronidazole', 'flagyl', 'penicillin',
  'trimethoprim', 'bactrim', 'vancomycin', 'fluconazole', 'valacyclovir', 'acyclovir', 'oseltamivir', 'tamiflu',
  'paxlovid',
  'sertraline', 'zoloft', 'fluoxetine', 'prozac', 'escitalopram', 'lexapro', 'citalopram', 'paroxetine',
  'bupropion', 'wellbutrin', 'venlafaxine', 'effexor', 'duloxetine', 'cymbalta', 'mirtazapine', 'trazodone',
  'amitriptyline', 'nortriptyline', 'quetiapine', 'seroquel', 'aripiprazole', 'abilify', 'risperidone',
  'olanzapine', 'lithium', 'lamotrigine', 'lamictal', 'alprazolam', 'xanax', 'lorazepam', 'ativan', 'clonazepam',
  'klonopin', 'diazepam', 'valium', 'zolpidem', 'ambien', 'buspirone', 'hydroxyzine', 'methylphenidate', 'ritalin',
  'adderall', 'amphetamine', 'atomoxetine',
  'gabapentin', 'neurontin', 'pregabalin', 'lyrica', 'levetiracetam', 'keppra', 'topiramate', 'topamax',
  'carbamazepine', 'phenytoin', 'valproate', 'sumatriptan', 'imitrex', 'donepezil', 'memantine', 'carbidopa',
  'levodopa', 'cyclobenzaprine', 'tizanidine', 'baclofen', 'tramadol', 'oxycodone', 'hydrocodone', 'morphine',
  'codeine', 'percocet', 'norco',
  'omeprazole', 'prilosec', 'pantoprazole', 'protonix', 'esomeprazole', 'nexium', 'famotidine', 'pepcid',
  'ondansetron', 'zofran', 'metoclopramide', 'docusate', 'polyethylene glycol', 'miralax', 'loperamide',
  'cetirizine', 'zyrtec', 'loratadine', 'claritin', 'fexofenadine', 'allegra', 'diphenhydramine', 'benadryl',
  'tamsulosin', 'flomax', 'finasteride', 'oxybutynin', 'sildenafil', 'tadalafil', 'allopurinol', 'colchicine',
  'alendronate', 'fosamax', 'estradiol', 'medroxyprogesterone', 'norethindrone', 'tamoxifen', 'letrozole',
  'anastrozole', 'methotrexate', 'hydroxychloroquine', 'plaquenil', 'adalimumab', 'humira', 'etanercept', 'enbrel',
  'infliximab', 'pembrolizumab', 'keytruda', 'rituximab', 'cyclophosphamide', 'doxorubicin', 'cisplatin',
  'carboplatin', 'paclitaxel', 'epoetin', 'ferrous sulfate', 'cyanocobalamin', 'folic acid', 'potassium chloride',
  'prenatal vitamins', 'epinephrine', 'epipen',
];

/** Common diagnoses and conditions. */
export const DIAGNOSES: readonly string[] = [
  'type 1 diabetes', 'type 2 diabetes', 'diabetes mellitus', 'diabetes', 'prediabetes', 'gestational diabetes',
  'hypertension', 'high blood pressure', 'hyperlipidemia', 'high cholesterol', 'hypercholesterolemia',
  'coronary artery disease', 'heart failure', 'congestive heart failure', 'atrial fibrillation', 'afib',
  'myocardial infarction', 'heart attack', 'angina', 'cardiomyopathy', 'stroke', 'transient ischemic attack',
  'deep vein thrombosis', 'pulmonary embolism', 'peripheral artery disease',
  'asthma', 'copd', 'chronic obstructive pulmonary disease', 'pneumonia', 'bronchitis', 'sleep apnea',
  'obstructive sleep apnea', 'tuberculosis', 'covid-19', 'influenza',
  'chronic kidney disease', 'ckd', 'acute kidney injury', 'kidney stones', 'urinary tract infection', 'uti',
  'hypothyroidism', 'hyperthyroidism', 'obesity', 'osteoporosis', 'osteopenia', 'osteoarthritis',
  'rheumatoid arthritis', 'gout', 'lupus', 'psoriasis', 'fibromyalgia',
  'anemia', 'iron deficiency anemia', 'sickle cell disease', 'hemophilia',
  'breast cancer', 'prostate cancer', 'lung cancer', 'colon cancer', 'colorectal cancer', 'pancreatic cancer',
  'ovarian cancer', 'cervical cancer', 'skin cancer', 'melanoma', 'lymphoma', 'leukemia', 'multiple myeloma',
  'carcinoma', 'metastatic',
  'depression', 'major depressive disorder', 'anxiety', 'generalized anxiety disorder', 'panic disorder',
  'bipolar disorder', 'schizophrenia', 'ptsd', 'post-traumatic stress disorder', 'adhd', 'autism',
  'eating disorder', 'anorexia nervosa', 'insomnia', 'dementia', "alzheimer's disease", "alzheimer's",
  "parkinson's disease", 'multiple sclerosis', 'epilepsy', 'seizure disorder', 'migraine', 'neuropathy',
  'gerd', 'acid reflux', "crohn's disease", 'ulcerative colitis', 'irritable bowel syndrome', 'ibs',
  'celiac disease', 'cirrhosis', 'fatty liver disease', 'hepatitis b', 'hepatitis c', 'pancreatitis',
  'diverticulitis', 'hiv', 'aids', 'chlamydia', 'gonorrhea', 'syphilis', 'herpes', 'hpv',
  'cellulitis', 'sepsis', 'fracture', 'concussion', 'glaucoma', 'cataract', 'macular degeneration',
  'preeclampsia', 'infertility', 'miscarriage', 'endometriosis', 'pcos', 'polycystic ovary syndrome',
];

/** 42 CFR Part 2: substance-use-disorder diagnoses, treatment and treatment drugs. */
export const PART2_TERMS: readonly string[] = [
  'substance use disorder', 'opioid use disorder', 'alcohol use disorder', 'cannabis use disorder',
  'stimulant use disorder', 'substance abuse', 'drug abuse', 'alcohol abuse', 'alcohol dependence',
  'opioid dependence', 'alcoholism', 'drug addiction', 'opioid addiction', 'addiction treatment',
  'substance use treatment', 'medication-assisted treatment', 'medication for opioid use disorder', 'moud',
  'detox', 'detoxification', 'withdrawal management', 'methadone', 'methadone clinic', 'buprenorphine',
  'suboxone', 'subutex', 'sublocade', 'naltrexone', 'vivitrol', 'disulfiram', 'antabuse', 'acamprosate',
  'opioid treatment program', 'intensive outpatient program for substance use', 'sober living', 'heroin use',
  'fentanyl use', 'cocaine use', 'methamphetamine use',
];

/**
 * Lab tests whose name followed by a value is a lab result. The value is
 * matched after the name (see LAB_VALUE_TAIL in phi-lexicon-detector.ts).
 */
export const LAB_TESTS: readonly string[] = [
  'hba1c', 'a1c', 'hemoglobin a1c', 'glucose', 'fasting glucose', 'blood glucose', 'blood sugar', 'ldl',
  'ldl cholesterol', 'hdl', 'hdl cholesterol', 'total cholesterol', 'cholesterol', 'triglycerides', 'creatinine',
  'egfr', 'bun', 'tsh', 'free t4', 't4', 'potassium', 'sodium', 'calcium', 'magnesium', 'hemoglobin', 'hgb',
  'hematocrit', 'wbc', 'white blood cell count', 'platelets', 'platelet count', 'inr', 'psa', 'alt', 'ast',
  'vitamin d', 'vitamin b12', 'b12', 'ferritin', 'troponin', 'crp', 'c-reactive protein', 'esr', 'bnp',
  'nt-probnp', 'uric acid', 'albumin', 'bilirubin', 'lipase', 'viral load', 'cd4 count', 'cd4',
];
