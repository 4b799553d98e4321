using Peft.Generators.Methods;
using Peft.Generators.Model;

namespace Peft.Analyzers.Tests;

/// <summary>Builds generic adapter models from a method's spec defaults with some arguments overridden.</summary>
internal static class TestAdapters
{
    public static AdapterModel Create(string method, params (string Name, object Value)[] overrides)
    {
        var spec = MethodCatalogue.Get(method);
        var values = spec.Arguments.Select(a =>
        {
            var value = a.DefaultValue();
            foreach (var (name, v) in overrides)
            {
                if (name != a.Name) continue;
                value = v switch
                {
                    int i => value with { Integer = i, Number = i, Written = true },
                    double d => value with { Number = d, Written = true },
                    bool b => value with { Integer = b ? 1 : 0, Written = true },
                    string s => value with { Text = s, Written = true },
                    _ => value,
                };
            }
            return value;
        });
        return new AdapterModel(method, "default", values.ToEquatableArray());
    }
}
