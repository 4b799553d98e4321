using Peft;

namespace Peft.Benchmarks;

/// <summary>
/// The methods the benchmark compares, one line each: a method joins with its options and the layers it adapts here. Each
/// is applied to <see cref="AdaptableStack"/> (its four linear layers, or its four norms); its training step is reported
/// against LoRA r=8's and against the frozen base's, in the same run. Layer freezing (Telly, <c>--method freeze-bottom</c>) is
/// not an adapter option and needs a transformer stack (<see cref="ITransformerStack"/>), which this four-layer stack is not:
/// it is measured in section 8 on <see cref="FreezableStack"/> (Freezing.cs). ID³ and SPT train masked entries of the base
/// weights (SPT also LoRA where its plan says so), not one adapter option: their lines in section 6 come from
/// <see cref="SelectiveProbe"/> (Selective.cs). Bottleneck adapters (Compacter's PHM ones too) are inserted after a
/// block's sub-layers, not on a layer: section 9 measures them against LoRA on <see cref="InsertionStack"/> (Bottleneck.cs).
/// MEFT changes how a stack's blocks run together (a reversible stack, <see cref="IStackRunner"/>) and exists for its memory:
/// section 11 measures its activation memory against LoRA's on the Llama-layout decoder (<see cref="MeftProbe"/>, Meft.cs).
/// The prompt methods (prompt tuning, DePT, P-tuning) adapt the input embedding, which this stack has not: section 12 measures them
/// against LoRA on <see cref="PromptStack"/> (Prompts.cs, <c>--prompts</c> alone).
/// </summary>
internal static class BenchmarkedMethods
{
    public static readonly (string Name, PeftAdapterOptions Options, TargetModules Targets)[] All =
    {
        ("LoRA r=8", new LoRAOptions(Rank: 8, Alpha: 16), TargetModules.AllLinear),
        ("LoKr r=8", new KroneckerOptions(Rank: 8, Alpha: 8), TargetModules.AllLinear),
        ("DiffuseKronA", new KroneckerOptions(Rank: 8, Alpha: 8, FullFactors: true), TargetModules.AllLinear),
        ("DoRA r=8", new DoRAOptions(Rank: 8, Alpha: 16), TargetModules.AllLinear),
        ("IA3", new IA3Options(), TargetModules.AllLinear),
        ("LN tuning", new LNTuningOptions(), AdaptableStack.Norms),
        ("LoHa r=8", new LoHaOptions(Rank: 8, Alpha: 8), TargetModules.AllLinear),
        ("HiRA r=32", new HiRAOptions(Rank: 32), TargetModules.AllLinear),
        ("VeRA r=256", new VeRAOptions(Rank: 256), TargetModules.AllLinear),
        ("BitFit (linear biases)", new BitFitOptions(), TargetModules.AllLinear),
        ("SSF (linear outputs)", new SSFOptions(), TargetModules.AllLinear),
        // PiSSA and OLoRA train as LoRA (same forward and factors, on the residual base); what differs is the one-time
        // initialisation, timed on its own (Program.cs section 7: full SVD vs randomized SVD with niter 4 vs QR).
        ("PiSSA r=8", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.PiSSA, PissaIterations: 4), TargetModules.AllLinear),
        ("OLoRA r=8", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.OLoRA), TargetModules.AllLinear),
        ("RandLoRA r=32", new RandLoRAOptions(Rank: 32), TargetModules.AllLinear),
        ("VB-LoRA r=4", new VBLoRAOptions(Rank: 4), TargetModules.AllLinear),
        // SVFit and LoLDU train r (+1) values per layer through two r-wide products over frozen factors of the weight.
        ("SVFit r=8", new SVFitOptions(Rank: 8), TargetModules.AllLinear),
        ("LoLDU r=8", new LoLDUOptions(Rank: 8), TargetModules.AllLinear),
        // KaSA: LoRA's two products with the r-sized diagonal between them (its one-time SVD truncation is not in the step).
        ("KaSA r=8", new KaSAOptions(Rank: 8), TargetModules.AllLinear),
        // SoKA: 8 Kronecker terms applied by the vec trick (two batched products), on the residual of its Kronecker SVD.
        ("SoKA r=8", new SoKAOptions(Rank: 8), TargetModules.AllLinear),
    };

    /// <summary>The initialisations that rewrite the base, timed on one 1024 x 1024 weight (section 7).</summary>
    public static readonly (string Name, LoRAOptions Options)[] BaseInitializations =
    {
        ("PiSSA full SVD", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.PiSSA)),
        ("PiSSA niter=4", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.PiSSA, PissaIterations: 4)),
        ("OLoRA QR", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.OLoRA)),
        // LoftQ: each iteration quantizes (NF4 or int8) and takes a full SVD of the quantization error; it trains as LoRA
        // (on a quantized base, QLoRA's step).
        ("LoftQ NF4 iter=1", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.LoftQ)),
        ("LoftQ NF4 iter=5", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.LoftQ, LoftQIterations: 5)),
        ("LoftQ int8 iter=1", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.LoftQ, LoftQBits: 8)),
    };

    /// <summary>CorDA (section 7): the decomposition of one 1024 x 1024 weight against a given input covariance (damped inverse,
    /// W C̃, full SVD, V = (Vᴴ C̃⁻¹)ᵀ, factors and residual), IPM and KPM; its covariance from 16 calibration calls is timed
    /// on its own line. It trains as LoRA.</summary>
    public static readonly (string Name, LoRAOptions Options)[] CorDAInitializations =
    {
        ("CorDA IPM", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.CorDA)),
        ("CorDA KPM", new LoRAOptions(Rank: 8, Alpha: 16, Init: LoRAInit.CorDA, CorDAMethod: CorDAMethod.Kpm)),
    };

    /// <summary>QLoRA: the first line's LoRA over a base whose four frozen weights are stored quantized (dequantized in each
    /// forward and again in the backward).</summary>
    public static readonly (string Name, QuantizationFormat Format)[] QuantizedBases =
    {
        ("QLoRA NF4 r=8", QuantizationFormat.NF4),
        ("QLoRA int8 r=8", QuantizationFormat.Int8),
    };
}
