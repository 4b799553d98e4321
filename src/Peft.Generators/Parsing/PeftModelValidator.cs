using System.Linq;
using Peft.Generators.Model;

namespace Peft.Generators.Parsing;

/// <summary>
/// Checks a parsed <see cref="PeftClassModel"/>. The generator emits code only for models that pass
/// <see cref="CanEmit"/>; the analyzers report every problem with a diagnostic ID (PEFT0001 and up).
/// </summary>
internal static partial class PeftModelValidator
{
    /// <summary>
    /// True when generated code for the model would compile and run: the class is a partial module, and
    /// every adapted member can be replaced by a wrapper layer. Value problems (a bad rank, an over-budget
    /// declaration) are left to the analyzers, which report them as errors in the same build.
    /// </summary>
    public static bool CanEmit(PeftClassModel model)
    {
        if (!model.IsPartial || !model.IsModule) return false;
        foreach (var member in model.Members)
        {
            if (member.Adapters.Count == 0) continue;
            if (member.IsReadOnly || !member.AcceptsWrapper) return false;
            if (member.Adapters.Select(a => a.Method == PeftMethodKind.PromptTune).Distinct().Count() > 1) return false;
        }
        return true;
    }
}
