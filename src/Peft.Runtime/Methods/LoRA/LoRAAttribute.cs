namespace Peft;

/// <summary>
/// Adds a LoRA adapter (Hu et al., 2021) to a linear layer: <c>y = W x + b + s · B(A(dropout(x)))</c> with
/// <c>A ∈ R^{r×in}</c>, <c>B ∈ R^{out×r}</c> and <c>s = alpha / r</c> (or <c>alpha / √r</c> with <see cref="UseRsLora"/>).
/// </summary>
/// <remarks>
/// Put it on a field or property of type <c>Module&lt;Tensor, Tensor&gt;</c> that holds a <c>TorchSharp.Modules.Linear</c>.
/// Defaults match Hugging Face PEFT's <c>LoraConfig</c> (r = 8, lora_alpha = 8, lora_dropout = 0). The attribute may be
/// repeated with different <see cref="Name"/>s to declare several named adapters on one layer.
/// </remarks>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class LoRAAttribute : Attribute
{
    /// <summary>Declares a LoRA adapter.</summary>
    /// <param name="rank">The rank r of the update (positive, at most min(in, out)).</param>
    /// <param name="alpha">The scaling numerator (positive); the update is scaled by alpha / rank.</param>
    /// <param name="dropout">Dropout probability applied to the adapter's input, in [0, 1).</param>
    public LoRAAttribute(int rank = 8, double alpha = 8.0, double dropout = 0.0)
    {
        Rank = rank;
        Alpha = alpha;
        Dropout = dropout;
    }

    /// <summary>The rank r of the low-rank update.</summary>
    public int Rank { get; }

    /// <summary>The scaling numerator alpha.</summary>
    public double Alpha { get; }

    /// <summary>Dropout probability on the adapter path (skipped entirely when 0).</summary>
    public double Dropout { get; }

    /// <summary>Use rank-stabilised scaling alpha / √r (rsLoRA, Kalajdzievski 2023) instead of alpha / r.</summary>
    public bool UseRsLora { get; set; }

    /// <summary>How A and B are initialised; except for <see cref="LoRAInit.Random"/>, B starts at zero so the adapted layer
    /// equals the base layer.</summary>
    public LoRAInit Init { get; set; } = LoRAInit.KaimingUniform;

    /// <summary>With <see cref="LoRAInit.PiSSA"/>: 0 (the default) for the full SVD (PEFT's <c>"pissa"</c>), K ≥ 1 for a
    /// randomized SVD with K power iterations (PEFT's <c>"pissa_niter_K"</c>, much faster on large weights). Must stay 0 with
    /// any other initialisation.</summary>
    public int PissaIterations { get; set; }

    /// <summary>With <see cref="LoRAInit.LoftQ"/>: the bits of the quantized base, 4 (NF4, the default) or 8 (int8); PEFT's
    /// <c>loftq_config.loftq_bits</c>. Must stay 4 with any other initialisation.</summary>
    public int LoftQBits { get; set; } = 4;

    /// <summary>With <see cref="LoRAInit.LoftQ"/>: the number of quantize/SVD alternations, at least 1 (the default); PEFT's
    /// <c>loftq_config.loftq_iter</c>. Must stay 1 with any other initialisation.</summary>
    public int LoftQIterations { get; set; } = 1;

    /// <summary>With <see cref="LoRAInit.CorDA"/>: which components of the context-oriented decomposition the adapter takes,
    /// <see cref="CorDAMethod.Ipm"/> (the default, the r largest) or <see cref="CorDAMethod.Kpm"/> (the r smallest); PEFT's
    /// <c>corda_config.corda_method</c>. Must stay <see cref="CorDAMethod.Ipm"/> with any other initialisation.</summary>
    public CorDAMethod CorDAMethod { get; set; } = CorDAMethod.Ipm;

    /// <summary>The adapter name (PEFT's adapter_name). Defaults to <c>"default"</c>.</summary>
    public string Name { get; set; } = AdapterNames.Default;
}

/// <summary>Initialisation of the LoRA A matrix.</summary>
public enum LoRAInit
{
    /// <summary>Kaiming-uniform with a = √5 (the nn.Linear default), as PEFT's <c>init_lora_weights=True</c>.</summary>
    KaimingUniform = 0,

    /// <summary>Normal with standard deviation 1/r, as PEFT's <c>init_lora_weights="gaussian"</c>.</summary>
    Gaussian = 1,

    /// <summary>A and B both kaiming-uniform (nn.Linear's default), as PEFT's <c>init_lora_weights=False</c>: the adapter
    /// does not start at zero (for experiments and tests only).</summary>
    Random = 2,

    /// <summary>PiSSA (Meng et al., 2024), PEFT's <c>init_lora_weights="pissa"</c> (or <c>"pissa_niter_K"</c> with
    /// <see cref="LoRAAttribute.PissaIterations"/>): from the SVD <c>W = U S Vᵀ</c>, <c>A = diag(√(S_r/s)) V_rᵀ</c> and
    /// <c>B = U_r diag(√(S_r/s))</c>, and the base weight becomes the residual <c>W − s·B A</c> (its minor components), so the
    /// adapted layer starts equal to the original one and training moves the principal components.</summary>
    PiSSA = 3,

    /// <summary>OLoRA (Büyükakyüz, 2024), PEFT's <c>init_lora_weights="olora"</c>: from the QR decomposition <c>W = Q R</c>,
    /// <c>B = Q[:, :r]</c> and <c>A = R[:r]</c>, and the base weight becomes <c>W − s·B A</c>.</summary>
    OLoRA = 4,

    /// <summary>LoftQ (Li et al., 2023), PEFT's <c>init_lora_weights="loftq"</c> with <c>loftq_config</c>
    /// (<see cref="LoRAAttribute.LoftQBits"/>, <see cref="LoRAAttribute.LoftQIterations"/>): alternately <c>Q = quant(W − s·B A)</c>
    /// and A, B from the top-r SVD of <c>W − Q</c>; the base weight becomes <c>Q</c> (dequantized; <c>model.QuantizeBase</c> in the
    /// same format then stores exactly those codes), so the layer starts at <c>Q + s·B A ≈ W</c> on a quantized base.</summary>
    LoftQ = 5,

    /// <summary>EVA (Paischer et al., 2024, "Explained Variance Adaptation"), PEFT's <c>init_lora_weights="eva"</c>: a data-driven
    /// initialisation. Until <c>model.InitializeEva(batches, forward, config)</c> (<see cref="EvaInitialization"/>) runs, the adapter is
    /// PEFT's placeholder (A kaiming-uniform, B zero); that step computes an incremental PCA of each adapted layer's inputs over
    /// calibration batches, redistributes the ranks across layers by explained variance, sets <c>A</c> to each layer's top principal
    /// components and <c>B = 0</c>. The base weight is not changed.</summary>
    EVA = 6,
    /// <summary>CorDA (Yang et al., 2024), PEFT's <c>init_lora_weights="corda"</c> with <c>corda_config</c>
    /// (<see cref="LoRAAttribute.CorDAMethod"/>): from the input covariance <c>C</c> of calibration data,
    /// <c>U S Vᴴ = svd(W C)</c>, <c>V = (Vᴴ C⁻¹)ᵀ</c>; A and B take r components (the largest for IPM, the smallest for KPM)
    /// with the singular values over s, and the base weight becomes <c>W − s·B A</c>. The adapter waits for
    /// <c>model.PreprocessCorDA(...)</c>, which captures the covariance and runs the initialisation; until then it refuses to
    /// run.</summary>
    CorDA = 7,
}

/// <summary>CorDA's mode (PEFT's <c>corda_config.corda_method</c>).</summary>
public enum CorDAMethod
{
    /// <summary>Instruction-previewed mode (<c>"ipm"</c>): the adapter takes the r largest components of <c>W C</c>, the
    /// directions the calibration task uses most (faster fine-tuning).</summary>
    Ipm = 0,

    /// <summary>Knowledge-preserved mode (<c>"kpm"</c>): the adapter takes the r smallest components, so the base keeps the
    /// directions the calibration data (e.g. world-knowledge questions) uses most.</summary>
    Kpm = 1,
}

/// <summary>Well-known adapter names.</summary>
public static class AdapterNames
{
    /// <summary>The name PEFT gives an adapter when none is specified.</summary>
    public const string Default = "default";
}
