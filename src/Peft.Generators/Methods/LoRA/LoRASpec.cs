using System.Collections.Immutable;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Generators.Methods.LoRA;

/// <summary><c>[LoRA(rank, alpha, dropout, UseRsLora, Init, PissaIterations, LoftQBits, LoftQIterations, CorDAMethod)]</c> →
/// <c>Peft.LoRAOptions</c>; r·(in + out) parameters. PEFT0021 reports initialisation arguments that do not go together
/// (PissaIterations below 0, or set without Init = PiSSA); PEFT0050 LoftQ's (LoftQBits not 4 or 8, LoftQIterations below 1,
/// either changed without Init = LoftQ); PEFT0043 an EVA rank whose default largest rank round(2r) exceeds a constant-size layer's
/// input width; PEFT0038 CorDAMethod changed without Init = CorDA.</summary>
internal sealed class LoRASpec : MethodSpec
{
    /// <summary>PEFT0021: the initialisation arguments do not go together (LoRA's PissaIterations; PiSSA/OLoRA on DoRA).</summary>
    public const string InitArgumentsId = "PEFT0021";

    /// <summary>PEFT0050: LoftQ's arguments are out of range or set without Init = LoftQ.</summary>
    public const string LoftQArgumentsId = "PEFT0050";

    /// <summary>PEFT0043: with Init = EVA, EVA's default largest rank round(r · 2) exceeds the layer's input width.</summary>
    public const string EvaRankId = "PEFT0043";
    /// <summary>PEFT0038: CorDA's arguments are set without Init = CorDA.</summary>
    public const string CorDAArgumentsId = "PEFT0038";

    /// <summary><c>LoRAInit.LoftQ</c>'s value.</summary>
    public const int LoftQ = 5;

    /// <summary><c>LoRAInit.EVA</c>'s value.</summary>
    public const int Eva = 6;
    /// <summary><c>LoRAInit.CorDA</c>'s value.</summary>
    public const int CorDA = 7;

#if PEFT_ANALYZERS
    /// <summary>PEFT0021's descriptor (docs/diagnostics/PEFT0021.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor InitArguments = new(
        "PEFT0021",
        "Invalid LoRA initialisation arguments",
        "[{0}] on '{1}': {2}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0021"));

    /// <summary>PEFT0050's descriptor (docs/diagnostics/PEFT0050.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor LoftQArguments = new(
        "PEFT0050",
        "Invalid LoftQ arguments",
        "[{0}] on '{1}': {2}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0050"));

    /// <summary>PEFT0043's descriptor (docs/diagnostics/PEFT0043.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor EvaRank = new(
        "PEFT0043",
        "EVA rank too large for the layer's input",
        "[{0}] on '{1}': {2}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Warning,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0043"));

    /// <summary>PEFT0038's descriptor (docs/diagnostics/PEFT0038.md).</summary>
    public static readonly Microsoft.CodeAnalysis.DiagnosticDescriptor CorDAArguments = new(
        "PEFT0038",
        "Invalid CorDA arguments",
        "[{0}] on '{1}': {2}",
        global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.Category,
        Microsoft.CodeAnalysis.DiagnosticSeverity.Error,
        isEnabledByDefault: true,
        helpLinkUri: global::Peft.Analyzers.Diagnostics.DiagnosticDescriptors.HelpLink("PEFT0038"));

    public override ImmutableArray<Microsoft.CodeAnalysis.DiagnosticDescriptor> Diagnostics { get; } = ImmutableArray.Create(InitArguments, LoftQArguments, EvaRank, CorDAArguments);
#endif

    public override string Name => "LoRA";

    public override string OptionsType => "global::Peft.LoRAOptions";

    public override LayerKind LayerKinds => LayerKind.Linear;

    public override ImmutableArray<ArgumentSpec> Arguments { get; } = LowRankSpec.Arguments.AddRange(new[]
    {
        ArgumentSpec.Int("PissaIterations", "PissaIterations", 0),
        ArgumentSpec.Int("LoftQBits", "LoftQBits", 4),
        ArgumentSpec.Int("LoftQIterations", "LoftQIterations", 1),
        ArgumentSpec.Enum("CorDAMethod", "CorDAMethod", "global::Peft.CorDAMethod", "Ipm", "Kpm"),
    });

    public override void Validate(ValidationContext context)
    {
        LowRankSpec.Validate(context);
        int iterations = context.Adapter.Int("PissaIterations");
        if (iterations < 0)
        {
            context.Report(InitArgumentsId, "PissaIterations", Name, context.Member.Name,
                "PissaIterations is " + ValidationContext.Format(iterations) + "; use 0 for the full SVD (init_lora_weights \"pissa\") or K >= 1 power iterations of the randomized SVD (\"pissa_niter_K\")");
        }
        else if (iterations != 0 && context.Adapter.Int("Init") != LowRankSpec.PiSSA)
        {
            context.Report(InitArgumentsId, "PissaIterations", Name, context.Member.Name,
                "PissaIterations applies to Init = LoRAInit.PiSSA only; set Init = LoRAInit.PiSSA or remove PissaIterations");
        }

        ValidateLoftQ(context);
        int rank = context.Adapter.Int("rank");
        if (context.Adapter.Int("Init") == Eva && rank > 0 && context.Layer is { InFeatures: long inFeatures }
            && global::Peft.Generators.Rules.EvaRules.DefaultMaxComponents(rank) > inFeatures)
        {
            context.Report(EvaRankId, "rank", Name, context.Member.Name,
                "EVA's PCA keeps round(r * rho) = " + ValidationContext.Format(global::Peft.Generators.Rules.EvaRules.DefaultMaxComponents(rank)) +
                " components with the default rho 2, more than the layer's " + ValidationContext.Format(inFeatures) +
                " input features; lower the rank, or pass new EvaConfig(Rho: ...) with round(r * rho) <= in_features to InitializeEva and suppress this warning");
        }

        if (context.Adapter.Int("CorDAMethod") != 0 && context.Adapter.Int("Init") != CorDA)
        {
            context.Report(CorDAArgumentsId, "CorDAMethod", Name, context.Member.Name,
                "CorDAMethod applies to Init = LoRAInit.CorDA only (PEFT's corda_config.corda_method); set Init = LoRAInit.CorDA or remove CorDAMethod");
        }
    }

    private void ValidateLoftQ(ValidationContext context)
    {
        int bits = context.Adapter.Int("LoftQBits");
        int iterations = context.Adapter.Int("LoftQIterations");
        if (context.Adapter.Int("Init") != LoftQ)
        {
            if (bits != 4)
            {
                context.Report(LoftQArgumentsId, "LoftQBits", Name, context.Member.Name,
                    "LoftQBits applies to Init = LoRAInit.LoftQ only; set Init = LoRAInit.LoftQ or remove LoftQBits");
            }

            if (iterations != 1)
            {
                context.Report(LoftQArgumentsId, "LoftQIterations", Name, context.Member.Name,
                    "LoftQIterations applies to Init = LoRAInit.LoftQ only; set Init = LoRAInit.LoftQ or remove LoftQIterations");
            }

            return;
        }

        if (bits != 4 && bits != 8)
        {
            context.Report(LoftQArgumentsId, "LoftQBits", Name, context.Member.Name,
                "LoftQBits is " + ValidationContext.Format(bits) + "; use 4 (NF4, loftq_bits 4) or 8 (int8, loftq_bits 8)");
        }

        if (iterations < 1)
        {
            context.Report(LoftQArgumentsId, "LoftQIterations", Name, context.Member.Name,
                "LoftQIterations is " + ValidationContext.Format(iterations) + "; use at least 1 quantize/SVD alternation (loftq_iter)");
        }
    }

    public override bool IsCountable(AdapterModel adapter) => adapter.Int("rank") > 0;

    public override long? CountParameters(AdapterModel adapter, LayerInfo layer, long inFeatures, long outFeatures)
        => global::Peft.Generators.Rules.LoRARules.ParameterCount(inFeatures, outFeatures, adapter.Int("rank"));
}

/// <summary>The arguments and rules every LoRA-style method (LoRA, DoRA, ...) shares: one copy.</summary>
internal static class LowRankSpec
{
    /// <summary>rank (8), alpha (8.0), dropout (0.0), UseRsLora (false), Init (KaimingUniform): PEFT's LoraConfig defaults.</summary>
    public static readonly ImmutableArray<ArgumentSpec> Arguments = ImmutableArray.Create(
        ArgumentSpec.Int("rank", "Rank", 8),
        ArgumentSpec.Double("alpha", "Alpha", 8.0),
        ArgumentSpec.Double("dropout", "Dropout", 0.0),
        ArgumentSpec.Bool("UseRsLora", "UseRsLora", false),
        ArgumentSpec.Enum("Init", "Init", "global::Peft.LoRAInit", "KaimingUniform", "Gaussian", "Random", "PiSSA", "OLoRA", "LoftQ", "EVA", "CorDA"));

    /// <summary><c>LoRAInit.PiSSA</c>'s value.</summary>
    public const int PiSSA = 3;

    /// <summary><c>LoRAInit.OLoRA</c>'s value.</summary>
    public const int OLoRA = 4;

    /// <summary>PEFT0001 rank, PEFT0002 alpha, PEFT0003 dropout, PEFT0004 rank larger than min(in, out).</summary>
    public static void Validate(ValidationContext c)
    {
        string attribute = c.Spec.Name;
        int rank = c.Adapter.Int("rank");
        double alpha = c.Adapter.Double("alpha");
        double dropout = c.Adapter.Double("dropout");
        if (rank <= 0) c.Report(PeftDiagnosticIds.RankNotPositive, "rank", attribute, ValidationContext.Format(rank));
        if (!(alpha > 0) || double.IsInfinity(alpha)) c.Report(PeftDiagnosticIds.AlphaNotPositive, "alpha", attribute, ValidationContext.Format(alpha));
        if (!(dropout >= 0 && dropout < 1)) c.Report(PeftDiagnosticIds.DropoutOutOfRange, "dropout", attribute, ValidationContext.Format(dropout));
        if (rank > 0 && c.Layer is { InFeatures: long inFeatures, OutFeatures: long outFeatures }
            && rank > global::Peft.Generators.Rules.LoRARules.MaxRank(inFeatures, outFeatures))
        {
            c.Report(PeftDiagnosticIds.RankExceedsLayer, "rank", attribute, ValidationContext.Format(rank), c.Member.Name,
                ValidationContext.Format(inFeatures), ValidationContext.Format(outFeatures));
        }
    }
}
